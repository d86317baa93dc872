//! An upstream's own word wins: a `Retry-After` on the response, or an error's
//! `retry_after`, seen on the failure that opens the circuit sets the open wait, within
//! [`MIN_HINTED_WAIT`] and the cap. In paused time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::advance;
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_prism_breaker::{
    BreakerConfig, BreakerConfigBuilder, CircuitBreakerLayer, State, Window,
    DEFAULT_MAX_HINTED_WAIT, MIN_HINTED_WAIT,
};
use tower_prism_core::HttpClassifier;

type Response = http::Response<()>;

/// Trips on the second of two failures; one probe.
fn config() -> BreakerConfigBuilder {
    BreakerConfig::builder()
        .window(Window::Count { size: 2 })
        .minimum_calls(2)
        .permitted_calls_in_half_open(1)
}

fn shed(retry_after: &'static str) -> Response {
    http::Response::builder()
        .status(503)
        .header(http::header::RETRY_AFTER, retry_after)
        .body(())
        .unwrap()
}

/// A breaker over an upstream that answers `response()` to every call; trips it and
/// returns the open wait it reports.
async fn open_wait_after(
    config: BreakerConfig,
    response: fn() -> Response,
) -> (Duration, tower_prism_breaker::Breaker) {
    let layer = CircuitBreakerLayer::builder(config)
        .classify(HttpClassifier)
        .build()
        .unwrap();
    let breaker = layer.handle().clone();
    let mut svc = layer.layer(service_fn(move |()| async move {
        Ok::<_, BoxError>(response())
    }));
    for _ in 0..2 {
        let r = svc.ready().await.unwrap().call(()).await.unwrap();
        assert!(r.status().is_server_error());
    }
    assert_eq!(breaker.state(), State::Open);
    let wait = breaker.snapshot().retry_after.expect("open");
    (wait, breaker)
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_2_opens_the_circuit_for_2_seconds() {
    let (wait, breaker) = open_wait_after(config().build().unwrap(), || shed("2")).await;
    assert_eq!(wait, Duration::from_secs(2));
    // still refused just before, probing once it is over
    advance(Duration::from_millis(1_999)).await;
    assert!(breaker.acquire().is_err());
    advance(Duration::from_millis(1)).await;
    let probe = breaker
        .acquire()
        .expect("the wait the upstream asked for is over");
    breaker.release(probe);
}

#[tokio::test(start_paused = true)]
async fn the_hint_wins_over_a_longer_configured_wait() {
    let config = config()
        .wait_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let (wait, _) = open_wait_after(config, || shed("2")).await;
    assert_eq!(wait, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_is_clamped_to_the_cap() {
    // the default bound, 30 s
    let (wait, _) = open_wait_after(config().build().unwrap(), || shed("999999999")).await;
    assert_eq!(wait, BreakerConfig::default().effective_max_hinted_wait());
    assert_eq!(wait, DEFAULT_MAX_HINTED_WAIT);
    assert_eq!(wait, Duration::from_secs(30));
    // a cap the user set, which honours longer hints
    let capped = || {
        config()
            .max_wait_duration(Duration::from_secs(60))
            .build()
            .unwrap()
    };
    let (wait, _) = open_wait_after(capped(), || shed("99999999999999999999999")).await;
    assert_eq!(wait, Duration::from_secs(60));
    let (wait, _) = open_wait_after(capped(), || shed("45")).await;
    assert_eq!(wait, Duration::from_secs(45));
    // and one that bounds them tighter
    let tight = config()
        .max_wait_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let (wait, _) = open_wait_after(tight, || shed("2")).await;
    assert_eq!(wait, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_zero_retry_after_waits_the_floor() {
    let (wait, _) = open_wait_after(config().build().unwrap(), || shed("0")).await;
    assert_eq!(wait, MIN_HINTED_WAIT);
}

#[tokio::test(start_paused = true)]
async fn without_a_hint_the_computed_wait_applies() {
    let plain = || http::Response::builder().status(503).body(()).unwrap();
    let (wait, _) = open_wait_after(config().build().unwrap(), plain).await;
    assert_eq!(wait, BreakerConfig::default().wait_duration);
    // a 500's Retry-After is not a shedding hint
    let (wait, _) = open_wait_after(config().build().unwrap(), || {
        http::Response::builder()
            .status(500)
            .header(http::header::RETRY_AFTER, "7")
            .body(())
            .unwrap()
    })
    .await;
    assert_eq!(wait, BreakerConfig::default().wait_duration);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_round_with_a_hint_reopens_for_the_hint() {
    let (_, breaker) = open_wait_after(config().build().unwrap(), || shed("1")).await;
    advance(Duration::from_secs(1)).await;
    // the probe gets another 503 asking for 1 s: open again for 1 s, not the grown wait
    let layer = CircuitBreakerLayer::from_handle(breaker.clone()).classify(HttpClassifier);
    let mut svc = layer.layer(service_fn(|()| async { Ok::<_, BoxError>(shed("1")) }));
    svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.snapshot().retry_after, Some(Duration::from_secs(1)));
}

#[derive(Debug)]
struct Shed(Duration);
impl std::fmt::Display for Shed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shed, retry after {:?}", self.0)
    }
}
impl std::error::Error for Shed {}

static HINTS_READ: AtomicUsize = AtomicUsize::new(0);

fn shed_hint(e: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    HINTS_READ.fetch_add(1, Ordering::SeqCst);
    e.downcast_ref::<Shed>().map(|s| s.0)
}

#[tokio::test(start_paused = true)]
async fn an_error_hint_sets_the_wait_and_is_read_only_on_opening() {
    let config = BreakerConfig::builder()
        .window(Window::Count { size: 4 })
        .minimum_calls(4)
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::builder(config)
        .retry_after_hint(shed_hint)
        .build()
        .unwrap();
    let breaker = layer.handle().clone();
    let mut svc = layer.layer(service_fn(|fail: bool| async move {
        if fail {
            Err(Shed(Duration::from_millis(1_500)))
        } else {
            Ok(())
        }
    }));
    // successes and failures that do not open the circuit never read the hint
    for fail in [false, true, false] {
        let _ = svc.ready().await.unwrap().call(fail).await;
    }
    assert_eq!(HINTS_READ.load(Ordering::SeqCst), 0);
    assert_eq!(breaker.state(), State::Closed);
    // the failure that opens it does, once
    let err = svc.ready().await.unwrap().call(true).await.unwrap_err();
    assert!(err.is::<Shed>(), "the inner error passes through: {err}");
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(HINTS_READ.load(Ordering::SeqCst), 1);
    assert_eq!(
        breaker.snapshot().retry_after,
        Some(Duration::from_millis(1_500))
    );
    // rejections read nothing either
    for _ in 0..10 {
        assert!(svc.ready().await.unwrap().call(true).await.is_err());
    }
    assert_eq!(HINTS_READ.load(Ordering::SeqCst), 1);
    advance(Duration::from_millis(1_500)).await;
    svc.ready().await.unwrap().call(false).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

/// Classifies every response a success, and reads a hint from any response, as a
/// classifier reading a header whatever the status might (gRPC's pushback rides on
/// successes too).
#[derive(Clone)]
struct HintOnEveryResponse;

impl tower_prism_core::Classify<Response, BoxError> for HintOnEveryResponse {
    fn classify(&self, _: Result<&Response, &BoxError>) -> tower_prism_core::Outcome {
        tower_prism_core::Outcome::Success
    }

    fn retry_after(&self, result: Result<&Response, &BoxError>) -> Option<Duration> {
        result.ok().map(|_| Duration::from_secs(25))
    }
}

#[tokio::test(start_paused = true)]
async fn slow_successes_opening_the_circuit_are_not_asked_for_a_hint() {
    let config = config()
        .slow_call_duration(Duration::from_secs(1))
        .slow_call_rate_threshold(1.0)
        .wait_duration(Duration::from_secs(10))
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::builder(config)
        .classify(HintOnEveryResponse)
        .build()
        .unwrap();
    let breaker = layer.handle().clone();
    let mut svc = layer.layer(service_fn(|()| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok::<_, BoxError>(shed("25"))
    }));
    for _ in 0..2 {
        svc.ready().await.unwrap().call(()).await.unwrap();
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.retry_after, Some(Duration::from_secs(10)));
}
