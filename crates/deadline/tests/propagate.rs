//! Propagation: the time left written into the outgoing request (header and extension),
//! by the deadline stage and, for each later attempt, by `PropagateDeadline`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_prism_core::{BoxError, RequestDeadline};
use tower_prism_deadline::{DeadlineConfig, DeadlineLayer, HttpRequest, PropagateDeadlineLayer};

const MS: Duration = Duration::from_millis(1);

type Request = http::Request<()>;

/// What the next hop saw: the header value and the extension's time left.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<Duration>)>>>;

fn next_hop(
    seen: Seen,
) -> impl Service<Request, Response = (), Error = BoxError, Future: Send> + Clone {
    service_fn(move |req: Request| {
        let header = req
            .headers()
            .get("grpc-timeout")
            .map(|v| v.to_str().unwrap().to_owned());
        let left = RequestDeadline::of(&req).map(RequestDeadline::remaining);
        seen.lock().unwrap().push((header, left));
        async { Ok::<_, BoxError>(()) }
    })
}

/// A stand-in for a retry stage: sends the request twice, the second time `gap` after the
/// first answered, outside the deadline stage's `scope` (as a retry's backoff is).
#[derive(Clone)]
struct TwiceAfter<S> {
    inner: S,
    gap: Duration,
}

impl<S> Service<Request> for TwiceAfter<S>
where
    S: Service<Request, Response = (), Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let mut inner = self.inner.clone();
        let gap = self.gap;
        Box::pin(async move {
            let mut again = http::Request::new(());
            *again.headers_mut() = req.headers().clone();
            *again.extensions_mut() = req.extensions().clone();
            inner.ready().await?.call(req).await?;
            tokio::time::sleep(gap).await;
            inner.ready().await?.call(again).await
        })
    }
}

fn deadline_layer(propagate: bool) -> DeadlineLayer<HttpRequest> {
    let config = DeadlineConfig::builder()
        .timeout(MS * 1000)
        .header("grpc-timeout")
        .propagate(propagate)
        .build()
        .unwrap();
    DeadlineLayer::builder(config)
        .carrier(HttpRequest)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_attempt_carries_the_time_left_when_it_is_sent() {
    let seen = Seen::default();
    let deadline = deadline_layer(true);
    let propagate = deadline.propagate_layer();
    let mut svc = ServiceBuilder::new()
        .layer(deadline)
        .layer_fn(|inner| TwiceAfter {
            inner,
            gap: MS * 100,
        })
        .layer(propagate)
        .service(next_hop(seen.clone()));
    svc.ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (Some("1000000u".to_owned()), Some(MS * 1000)),
            // 100 ms into a 1 s deadline, the next hop sees 900 ms, not the stale 1 s
            (Some("900000u".to_owned()), Some(MS * 900)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn without_the_propagate_layer_a_later_attempt_carries_a_stale_header() {
    // what PropagateDeadline is for: the deadline stage writes once, at the first call
    let seen = Seen::default();
    let mut svc = ServiceBuilder::new()
        .layer(deadline_layer(true))
        .layer_fn(|inner| TwiceAfter {
            inner,
            gap: MS * 100,
        })
        .service(next_hop(seen.clone()));
    svc.ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    let headers: Vec<_> = seen.lock().unwrap().iter().map(|s| s.0.clone()).collect();
    assert_eq!(
        headers,
        [Some("1000000u".to_owned()), Some("1000000u".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn with_propagate_off_the_extension_is_set_but_no_header() {
    let seen = Seen::default();
    let deadline = deadline_layer(false);
    let propagate = deadline.propagate_layer();
    let mut svc = ServiceBuilder::new()
        .layer(deadline)
        .layer(propagate)
        .service(next_hop(seen.clone()));
    svc.ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![(None, Some(MS * 1000))]);
}

#[tokio::test(start_paused = true)]
async fn an_incoming_header_is_replaced_by_the_tighter_time_left() {
    let seen = Seen::default();
    let mut svc = deadline_layer(true).layer(next_hop(seen.clone()));
    let mut req = Request::new(());
    req.headers_mut()
        .insert("grpc-timeout", http::HeaderValue::from_static("5S"));
    svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Some("1000000u".to_owned()), Some(MS * 1000))]
    );
}

#[tokio::test(start_paused = true)]
async fn the_propagate_stage_makes_the_deadline_current_below_it() {
    // any request type: no extension, only the ambient deadline, re-scoped for the stages
    // below when the attempt is sent from inside the deadline's scope
    let deadline =
        DeadlineLayer::from_config(&DeadlineConfig::builder().timeout(MS * 500).build().unwrap())
            .unwrap();
    let propagate = PropagateDeadlineLayer::new(deadline.handle());
    let mut svc = ServiceBuilder::new()
        .layer(deadline)
        .layer(propagate)
        .service(service_fn(|(): ()| {
            let left = RequestDeadline::current().map(RequestDeadline::remaining);
            async move { Ok::<_, BoxError>(left) }
        }));
    let left = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(left, Some(MS * 500));

    // with no deadline anywhere, it passes the request on untouched
    let seen = Seen::default();
    let mut bare = PropagateDeadlineLayer::new(svc.handle().unwrap())
        .carrier(HttpRequest)
        .layer(next_hop(seen.clone()));
    let mut req = Request::new(());
    req.headers_mut()
        .insert("grpc-timeout", http::HeaderValue::from_static("7S"));
    bare.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![(Some("7S".to_owned()), None)]);
}
