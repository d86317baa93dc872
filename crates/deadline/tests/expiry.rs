//! The policy timeout and a request's own deadline: which wins, what an expiry reports,
//! and what the inner service sees or never sees.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_prism_core::{BoxError, RequestDeadline};
use tower_prism_deadline::{DeadlineConfig, DeadlineLayer, Error, ExpiryReason, HttpRequest};

const MS: Duration = Duration::from_millis(1);

/// An upstream answering after the delay in the request, counting calls and recording
/// the ambient deadline it was called under.
fn slow_upstream(
    calls: Arc<AtomicUsize>,
) -> impl Service<u64, Response = Option<RequestDeadline>, Error = BoxError, Future: Send> + Clone {
    service_fn(move |delay_ms: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        let seen = RequestDeadline::current();
        async move {
            tokio::time::sleep(MS * delay_ms as u32).await;
            Ok::<_, BoxError>(seen)
        }
    })
}

fn expiry(err: &BoxError) -> (Duration, ExpiryReason) {
    match err.downcast_ref::<Error>() {
        Some(Error::Expired { after, reason }) => (*after, *reason),
        _ => panic!("expected an expiry, got {err}"),
    }
}

fn layer(timeout: Option<Duration>) -> DeadlineLayer {
    let config = DeadlineConfig::builder().timeout(timeout).build().unwrap();
    DeadlineLayer::from_config(&config).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_policy_timeout_fails_a_slow_call_at_the_deadline() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer(Some(MS * 100));
    let handle = layer.handle().clone();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(slow_upstream(calls.clone()));

    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(500).await.unwrap_err();
    assert_eq!(start.elapsed(), MS * 100, "fails exactly at the deadline");
    assert_eq!(expiry(&err), (MS * 100, ExpiryReason::Policy));
    let error = err.downcast_ref::<Error>().unwrap();
    assert_eq!(error.retry_after(), None);
    assert_eq!(handle.snapshot().expired_policy, 1);

    // a fast call answers, and saw the deadline while it was called
    let seen = svc.ready().await.unwrap().call(40).await.unwrap();
    assert_eq!(seen, Some(RequestDeadline::at(start + MS * 200)));
    assert_eq!(handle.snapshot().expired, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn an_answer_ready_at_the_deadline_wins() {
    let mut svc = ServiceBuilder::new()
        .layer(layer(Some(MS * 100)))
        .service(slow_upstream(Arc::default()));
    svc.ready().await.unwrap().call(100).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_shorter_request_deadline_wins_over_the_policy() {
    let config = DeadlineConfig::builder()
        .timeout(MS * 1000)
        .build()
        .unwrap();
    let layer = DeadlineLayer::builder(config)
        .carrier(HttpRequest)
        .build()
        .unwrap();
    let handle = layer.handle().clone();
    let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: http::Request<u64>| async move {
            tokio::time::sleep(MS * *req.body() as u32).await;
            Ok::<_, BoxError>(RequestDeadline::of(&req))
        },
    ));
    let request = |delay: u64, deadline: Duration| {
        let mut req = http::Request::new(delay);
        RequestDeadline::after(deadline).set(&mut req);
        req
    };

    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(500, MS * 200))
        .await;
    assert_eq!(expiry(&err.unwrap_err()), (MS * 200, ExpiryReason::Request));
    assert_eq!(start.elapsed(), MS * 200);

    // and the policy wins over a longer request deadline
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(5000, MS * 3000))
        .await;
    assert_eq!(expiry(&err.unwrap_err()), (MS * 1000, ExpiryReason::Policy));
    assert_eq!(start.elapsed(), MS * 1000);

    // the extension the inner service sees is the deadline in force
    let start = Instant::now();
    let seen = svc.ready().await.unwrap().call(request(10, MS * 300)).await;
    assert_eq!(seen.unwrap(), Some(RequestDeadline::at(start + MS * 300)));

    let snapshot = handle.snapshot();
    assert_eq!((snapshot.expired_request, snapshot.expired_policy), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_outer_ambient_deadline_is_honoured_without_a_policy_timeout() {
    let mut svc = ServiceBuilder::new()
        .layer(layer(None))
        .service(slow_upstream(Arc::default()));
    let outer = RequestDeadline::after(MS * 50);
    svc.ready().await.unwrap();
    let future = outer.scope(|| svc.call(1000));
    let err = future.await.unwrap_err();
    assert_eq!(expiry(&err), (MS * 50, ExpiryReason::Request));
}

#[tokio::test(start_paused = true)]
async fn an_already_expired_request_never_reaches_the_inner_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer(Some(MS * 1000));
    let handle = layer.handle().clone();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(slow_upstream(calls.clone()));
    let passed = RequestDeadline::after(MS * 10);
    tokio::time::advance(MS * 20).await;

    svc.ready().await.unwrap();
    let future = passed.scope(|| svc.call(0));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not called");
    let err = future.await.unwrap_err();
    assert_eq!(expiry(&err), (Duration::ZERO, ExpiryReason::Request));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(handle.snapshot().expired_request, 1);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_unchanged() {
    let mut svc = ServiceBuilder::new()
        .layer(layer(Some(MS * 100)))
        .service(service_fn(|_: ()| async {
            Err::<(), _>("upstream said no")
        }));
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.downcast_ref::<Error>().is_none());
    assert_eq!(err.to_string(), "upstream said no");
}

#[tokio::test(start_paused = true)]
async fn with_no_deadline_calls_pass_through_untimed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer(None);
    let handle = layer.handle().clone();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(slow_upstream(calls.clone()));
    let start = Instant::now();
    let seen = svc.ready().await.unwrap().call(3_600_000).await.unwrap();
    assert_eq!(start.elapsed(), MS * 3_600_000, "an hour, untimed");
    assert_eq!(seen, None, "no ambient deadline set for the inner service");
    assert_eq!(handle.snapshot().expired, 0);
    assert!(format!("{:?}", svc.call(1)).contains("Plain"));
}
