//! The TSC clock: a limiter on it limits in real time, ignores tokio's paused clock, and
//! keeps its clock across a reload. (Real time, so the few sleeps here are short.)

use std::convert::Infallible;
use std::time::Duration;

use tower::BoxError;
use tower::{service_fn, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_limit::rate::{Clock, RateLimitConfig, RateLimitLayer};
use tower_prism_limit::Error;

fn echo() -> impl Service<u32, Response = u32, Error = Infallible> + Clone {
    service_fn(|n: u32| async move { Ok::<_, Infallible>(n) })
}

/// A limiter of `rate` per `period` and `burst` on the TSC clock.
fn tsc(rate: u32, period: Duration, burst: u32) -> RateLimitLayer {
    RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(rate)
            .period(period)
            .burst(burst)
            .clock(Clock::Tsc)
            .build()
            .unwrap(),
    )
    .unwrap()
}

fn retry_after(result: Result<u32, BoxError>) -> Duration {
    match *result.unwrap_err().downcast::<Error>().unwrap() {
        Error::RateLimited { retry_after } => retry_after,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tsc_limiter_admits_the_burst_then_refuses_with_the_refill_time() {
    let layer = tsc(1, Duration::from_secs(3600), 2);
    assert_eq!(layer.handle().clock(), Clock::Tsc);
    let svc = layer.layer(echo());
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
    assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2);
    let wait = retry_after(svc.clone().oneshot(3).await);
    assert!(
        wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600),
        "{wait:?}"
    );
    assert_eq!(layer.handle().snapshot().tokens, 0);
}

#[tokio::test]
async fn a_tsc_limiter_refills_in_real_time() {
    // 50 per second, burst 1: a token every 20 ms.
    let layer = tsc(50, Duration::from_secs(1), 1);
    let svc = layer.layer(echo());
    let start = std::time::Instant::now();
    svc.clone().oneshot(1).await.unwrap();
    match svc.clone().oneshot(2).await {
        Err(e) => {
            let wait = retry_after(Err(e));
            assert!(wait <= Duration::from_millis(20), "{wait:?}");
            tokio::time::sleep(wait + Duration::from_millis(2)).await;
            svc.clone().oneshot(3).await.unwrap();
        }
        // Only if this thread was descheduled for a whole interval between the two calls.
        Ok(_) => assert!(start.elapsed() >= Duration::from_millis(20)),
    }
}

#[tokio::test(start_paused = true)]
async fn a_tsc_limiter_ignores_paused_time() {
    let layer = tsc(1, Duration::from_secs(60), 1);
    let svc = layer.layer(echo());
    svc.clone().oneshot(1).await.unwrap();
    tokio::time::advance(Duration::from_secs(120)).await;
    // Two tokio minutes went by, but not two real ones: still empty.
    retry_after(svc.clone().oneshot(2).await);
}

#[test]
fn a_running_limiter_keeps_its_clock() {
    let layer = RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(10)
            .period(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .unwrap();
    let limiter = layer.handle();
    let tsc = {
        let mut c = RateLimitConfig::new(20, Duration::from_secs(1));
        c.clock = Clock::Tsc;
        c
    };
    let err = limiter.reconfigure(&tsc).unwrap_err();
    assert_eq!(err.field(), "clock");
    assert_eq!(err.value(), "tsc");
    // Nothing changed.
    assert_eq!(limiter.snapshot().rate_per_second, 10.0);
    assert_eq!(limiter.clock(), Clock::Auto);
}

#[test]
fn a_bad_clock_name_is_a_clear_error() {
    let err = toml::from_str::<RateLimitConfig>("rate = 1\nclock = \"sundial\"").unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `sundial`"),
        "{err}"
    );
}
