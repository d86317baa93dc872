//! What a call leaves behind: a dropped future, an expired call whose future is kept,
//! the ambient deadline after the call, and reconfiguration between calls.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_prism_core::{BoxError, RequestDeadline};
use tower_prism_deadline::{DeadlineConfig, DeadlineLayer, Error, HeaderFormat};

const MS: Duration = Duration::from_millis(1);

/// An upstream whose call futures each hold a clone of `token` (so the strong count says
/// how many are alive) and answer after the delay in the request.
fn holding(
    token: Arc<()>,
) -> impl Service<u64, Response = (), Error = BoxError, Future: Send> + Clone {
    service_fn(move |delay_ms: u64| {
        let token = token.clone();
        async move {
            tokio::time::sleep(MS * delay_ms as u32).await;
            drop(token);
            Ok::<_, BoxError>(())
        }
    })
}

fn layer(timeout: Duration) -> DeadlineLayer {
    let config = DeadlineConfig::builder().timeout(timeout).build().unwrap();
    DeadlineLayer::builder(config)
        .name("lifecycle")
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_leaves_nothing_behind() {
    let token = Arc::new(());
    let layer = layer(MS * 100);
    let handle = layer.handle().clone();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(holding(token.clone()));
    let idle = Arc::strong_count(&token);

    svc.ready().await.unwrap();
    let future = svc.call(1000);
    assert_eq!(
        RequestDeadline::current(),
        None,
        "the scope ends with the call"
    );
    {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            Arc::strong_count(&token),
            idle + 1,
            "the inner call is in flight"
        );
    }
    assert_eq!(Arc::strong_count(&token), idle, "dropped with the future");
    tokio::time::advance(MS * 500).await;
    assert_eq!(
        handle.snapshot().expired,
        0,
        "a dropped call is not an expiry"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_call_drops_the_inner_call_at_once() {
    let token = Arc::new(());
    let mut svc = ServiceBuilder::new()
        .layer(layer(MS * 100))
        .service(holding(token.clone()));
    let idle = Arc::strong_count(&token);
    svc.ready().await.unwrap();
    let mut future = pin!(svc.call(1000));
    let err = (&mut future).await.unwrap_err();
    assert!(err.downcast_ref::<Error>().is_some());
    // the response future is still here, but the inner call is gone
    assert_eq!(Arc::strong_count(&token), idle);
    // polled again, it answers the same error rather than panicking
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(future.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
}

#[tokio::test(start_paused = true)]
async fn reconfigure_takes_effect_for_the_next_call_and_a_bad_config_changes_nothing() {
    let layer = layer(MS * 100);
    let handle = layer.handle().clone();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(holding(Arc::default()));

    svc.ready().await.unwrap();
    let in_flight = svc.call(250);
    let longer = DeadlineConfig::builder().timeout(MS * 300).build().unwrap();
    handle.reconfigure(&longer).unwrap();
    assert!(
        in_flight.await.is_err(),
        "a call in flight keeps its deadline"
    );
    svc.ready().await.unwrap().call(250).await.unwrap();
    assert_eq!(handle.config(), longer);

    // an invalid config, or one changing the header, is refused whole
    let mut zero = longer.clone();
    zero.timeout = Some(Duration::ZERO);
    zero.propagate = false;
    assert_eq!(handle.reconfigure(&zero).unwrap_err().field(), "timeout");
    let with_header = longer.to_builder().header("grpc-timeout").build().unwrap();
    assert_eq!(
        handle.reconfigure(&with_header).unwrap_err().field(),
        "header"
    );
    assert_eq!(handle.config(), longer);
    let snapshot = handle.snapshot();
    assert_eq!(
        (snapshot.timeout, snapshot.propagate),
        (Some(MS * 300), true)
    );
    let start = Instant::now();
    assert!(svc.ready().await.unwrap().call(1000).await.is_err());
    assert_eq!(start.elapsed(), MS * 300);

    // no timeout at all: calls pass through untimed
    handle.reconfigure(&DeadlineConfig::default()).unwrap();
    let start = Instant::now();
    svc.ready().await.unwrap().call(5000).await.unwrap();
    assert_eq!(start.elapsed(), MS * 5000);
}

#[tokio::test(start_paused = true)]
async fn the_header_and_its_format_are_fixed_when_built() {
    let config = DeadlineConfig::builder()
        .header("grpc-timeout")
        .build()
        .unwrap();
    let handle = DeadlineLayer::from_config(&config)
        .unwrap()
        .handle()
        .clone();
    let other_format = config
        .to_builder()
        .header_format(HeaderFormat::Milliseconds)
        .build()
        .unwrap();
    assert_eq!(
        handle.check(&other_format).unwrap_err().field(),
        "header_format"
    );
    // spelling `Auto` out as what it resolves to is no change
    let same = config
        .to_builder()
        .header_format(HeaderFormat::Grpc)
        .build()
        .unwrap();
    handle.reconfigure(&same).unwrap();
    let none = config.to_builder().without_header().build().unwrap();
    assert_eq!(handle.check(&none).unwrap_err().field(), "header");
}

#[test]
fn a_bad_config_builds_no_layer() {
    let mut config = DeadlineConfig::default();
    config.header = Some("not a header".to_owned());
    let err = DeadlineLayer::from_config(&config).unwrap_err();
    assert_eq!(err.field(), "header");
}
