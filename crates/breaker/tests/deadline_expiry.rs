//! A deadline stage above the breaker: a call cut short by its deadline records nothing by
//! default (a deadline the caller set too short is not the upstream's fault), and counts
//! as a failure, with the time it ran, when `count_deadline_expiry` is on.

use std::time::Duration;

use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_prism_breaker::{Breaker, BreakerConfig, CircuitBreakerLayer, Error, State, Window};
use tower_prism_core::BoxError;
use tower_prism_deadline::{DeadlineConfig, DeadlineLayer};

const MS: Duration = Duration::from_millis(1);

/// A breaker that opens on 2 failures of 2 calls, whose calls over 80 ms are slow, with one
/// half-open probe, under a 100 ms deadline, over an upstream answering after the delay in the request.
fn stack(
    count_deadline_expiry: bool,
) -> (impl Service<u64, Response = (), Error = BoxError>, Breaker) {
    let breaker_config = BreakerConfig::builder()
        .window(Window::Count { size: 2 })
        .minimum_calls(2)
        .failure_rate_threshold(1.0)
        .permitted_calls_in_half_open(1)
        .slow_call_duration(MS * 80)
        .wait_duration(Duration::from_secs(10))
        .count_deadline_expiry(count_deadline_expiry)
        .build()
        .unwrap();
    let breaker_layer = CircuitBreakerLayer::from_config(&breaker_config).unwrap();
    let breaker = breaker_layer.handle().clone();
    let deadline_config = DeadlineConfig::builder().timeout(MS * 100).build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::from_config(&deadline_config).unwrap())
        .layer(breaker_layer)
        .service(service_fn(|delay_ms: u64| async move {
            tokio::time::sleep(MS * delay_ms as u32).await;
            Ok::<_, BoxError>(())
        }));
    (svc, breaker)
}

fn is_expiry(err: &BoxError) -> bool {
    matches!(
        err.downcast_ref::<tower_prism_deadline::Error>(),
        Some(tower_prism_deadline::Error::Expired { .. })
    )
}

#[tokio::test(start_paused = true)]
async fn by_default_an_expired_call_records_nothing() {
    let (mut svc, breaker) = stack(false);
    for _ in 0..3 {
        let err = svc.ready().await.unwrap().call(1000).await.unwrap_err();
        assert!(is_expiry(&err), "{err}");
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.calls, 0, "cut calls are released, not counted");
}

#[tokio::test(start_paused = true)]
async fn when_asked_an_expired_call_is_a_slow_failure_and_opens_the_circuit() {
    let (mut svc, breaker) = stack(true);
    let err = svc.ready().await.unwrap().call(1000).await.unwrap_err();
    assert!(is_expiry(&err), "{err}");
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (1, 1));
    assert_eq!(snapshot.slow_calls, 1, "recorded with the 100 ms it ran");

    // a call that answers in time is a success, as ever
    svc.ready().await.unwrap().call(10).await.unwrap();
    assert_eq!(breaker.snapshot().failures, 1);

    for _ in 0..2 {
        let err = svc.ready().await.unwrap().call(1000).await.unwrap_err();
        assert!(is_expiry(&err), "{err}");
    }
    assert_eq!(breaker.state(), State::Open);
    let err = svc.ready().await.unwrap().call(10).await.unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Error>(), Some(Error::CircuitOpen { .. })),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_its_deadline_still_records_nothing() {
    let (mut svc, breaker) = stack(true);
    svc.ready().await.unwrap();
    let future = svc.call(1000);
    // the caller gives up after 30 ms, well inside the 100 ms deadline
    assert!(tokio::time::timeout(MS * 30, future).await.is_err());
    assert_eq!(breaker.snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn an_expired_probe_fails_its_half_open_round() {
    let (mut svc, breaker) = stack(true);
    // open the circuit through expiries, then let the wait pass
    for _ in 0..2 {
        let _ = svc.ready().await.unwrap().call(1000).await;
    }
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_secs(10)).await;
    let err = svc.ready().await.unwrap().call(1000).await.unwrap_err();
    assert!(is_expiry(&err), "{err}");
    assert_eq!(
        breaker.state(),
        State::Open,
        "the probe's expiry reopened it"
    );
}

#[tokio::test(start_paused = true)]
async fn the_switch_is_live_reconfigurable() {
    let (mut svc, breaker) = stack(false);
    let _ = svc.ready().await.unwrap().call(1000).await;
    assert_eq!(breaker.snapshot().calls, 0);
    let on = breaker
        .config()
        .to_builder()
        .count_deadline_expiry(true)
        .build()
        .unwrap();
    breaker.reconfigure(&on).unwrap();
    let _ = svc.ready().await.unwrap().call(1000).await;
    assert_eq!(breaker.snapshot().failures, 1);
}
