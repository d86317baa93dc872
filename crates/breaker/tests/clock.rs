//! A breaker on the TSC clock: open waits and call durations in real time, paused tokio
//! time ignored, and the clock kept across a reconfiguration.

use std::time::Duration;

use tower::BoxError;
use tower::{service_fn, Layer, ServiceExt};
use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer, Error, State, Window};
use tower_prism_core::Clock;

/// Trips after one failure, stays open `wait`, lets one probe through.
fn tsc_layer(wait: Duration) -> CircuitBreakerLayer {
    CircuitBreakerLayer::from_config(
        &BreakerConfig::builder()
            .window(Window::Count { size: 10 })
            .minimum_calls(10)
            .consecutive_failures(1)
            .wait_duration(wait)
            .permitted_calls_in_half_open(1)
            .clock(Clock::Tsc)
            .build()
            .unwrap(),
    )
    .unwrap()
}

fn upstream() -> impl tower::Service<bool, Response = (), Error = BoxError> + Clone {
    service_fn(|ok: bool| async move {
        if ok {
            Ok(())
        } else {
            Err::<(), BoxError>("down".into())
        }
    })
}

fn open_for(result: Result<(), BoxError>) -> Duration {
    match *result.unwrap_err().downcast::<Error>().unwrap() {
        Error::CircuitOpen { retry_after } => retry_after,
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tsc_breaker_opens_waits_in_real_time_and_closes_on_a_good_probe() {
    let layer = tsc_layer(Duration::from_millis(50));
    let breaker = layer.handle().clone();
    let svc = layer.layer(upstream());
    let start = std::time::Instant::now();
    assert!(svc.clone().oneshot(false).await.is_err());
    assert_eq!(breaker.state(), State::Open);
    match svc.clone().oneshot(true).await {
        Err(e) => {
            let wait = open_for(Err(e));
            assert!(wait <= Duration::from_millis(50), "{wait:?}");
            tokio::time::sleep(wait + Duration::from_millis(5)).await;
            svc.clone().oneshot(true).await.unwrap();
        }
        // Only if this thread was descheduled for the whole open wait: that was the probe.
        Ok(()) => assert!(start.elapsed() >= Duration::from_millis(50)),
    }
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_tsc_breaker_ignores_paused_time() {
    let layer = tsc_layer(Duration::from_secs(60));
    let breaker = layer.handle().clone();
    let svc = layer.layer(upstream());
    assert!(svc.clone().oneshot(false).await.is_err());
    tokio::time::advance(Duration::from_secs(120)).await;
    // Two tokio minutes, not two real ones: still open, the upstream untouched.
    let wait = open_for(svc.clone().oneshot(true).await);
    assert!(wait > Duration::from_secs(50), "{wait:?}");
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn a_running_breaker_keeps_its_clock() {
    let layer = tsc_layer(Duration::from_secs(1));
    let tokio = BreakerConfig::builder()
        .window(Window::Count { size: 10 })
        .minimum_calls(10)
        .clock(Clock::Tokio)
        .build()
        .unwrap();
    let err = layer.handle().reconfigure(&tokio).unwrap_err();
    assert_eq!((err.field(), err.value()), ("clock", "tokio"));
    // Nor to the default, which may pick either clock at its first reading.
    let auto = BreakerConfig::builder()
        .window(Window::Count { size: 10 })
        .minimum_calls(10)
        .build()
        .unwrap();
    let err = layer.handle().reconfigure(&auto).unwrap_err();
    assert_eq!((err.field(), err.value()), ("clock", "auto"));
    assert_eq!(layer.handle().config().clock, Clock::Tsc);
}
