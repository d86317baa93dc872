//! `Retry-After` hints, from a response header or an error, are waited out only up to
//! `max_retry_after` (and what is left of `max_elapsed`); a longer one ends the call at once
//! with the answer that carried it. Paused time throughout.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::time::Instant;
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_retry::replayable;
use tower_prism_retry::{Backoff, Error, ReplayBody, RetryConfig, RetryLayer};

type Req = http::Request<ReplayBody<Full<Bytes>>>;

const YEAR: &str = "31536000";

/// An upstream that answers 503 with `Retry-After: <hint>` to the first `failures` calls,
/// then 200; counts its calls.
fn upstream(
    hint: &'static str,
    failures: u32,
) -> (
    impl Service<Req, Response = http::Response<()>, Error = BoxError, Future: Send> + Clone,
    Arc<AtomicU32>,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = service_fn({
        let calls = calls.clone();
        move |_: Req| {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                let response = if n <= failures {
                    http::Response::builder()
                        .status(503)
                        .header(http::header::RETRY_AFTER, hint)
                } else {
                    http::Response::builder().status(200)
                };
                Ok::<_, BoxError>(response.body(()).unwrap())
            }
        }
    });
    (svc, calls)
}

fn get() -> Req {
    replayable(
        http::Request::get("http://upstream/")
            .body(Full::new(Bytes::new()))
            .unwrap(),
        1024,
    )
}

fn http_layer(
    config: &RetryConfig,
) -> tower_prism_retry::RetryLayer<
    tower_prism_core::HttpClassifier,
    tower_prism_retry::ReplayIdempotent,
    tower_prism_retry::RetryAfterHeader,
> {
    RetryLayer::builder(config.clone()).http().build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_year_long_retry_after_returns_the_503_at_once_with_its_header() {
    let layer = http_layer(&RetryConfig::default());
    let (inner, calls) = upstream(YEAR, u32::MAX);
    let start = Instant::now();
    let response = layer.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()[http::header::RETRY_AFTER],
        YEAR,
        "intact"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1, "no retry");
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait at all");
    let snap = layer.handle().snapshot();
    assert_eq!((snap.retries, snap.gave_up), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn year_long_hints_cannot_hold_a_concurrency_limit() {
    // Four permits, as a concurrency limit of 4 would hold: four calls told to wait a year
    // must give them back at once, so a fifth (healthy) request gets one.
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let layer = http_layer(&RetryConfig::default());
    let (inner, _) = upstream(YEAR, u32::MAX);
    let start = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let svc = layer.layer(inner.clone());
        let permits = permits.clone();
        calls.spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            svc.oneshot(get()).await.unwrap().status()
        });
    }
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.unwrap(), 503);
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(permits.available_permits(), 4);
    let (healthy, _) = upstream(YEAR, 0);
    let _permit = permits
        .try_acquire()
        .expect("a permit for a healthy request");
    let response = layer.layer(healthy).oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_hint_within_max_retry_after_is_waited_out() {
    let layer = http_layer(&RetryConfig::default());
    let (inner, calls) = upstream("20", 1);
    let start = Instant::now();
    let response = layer.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(20));

    // 45 s is over the default 30 s, within a reconfigured 1 min
    let (inner, calls) = upstream("45", 1);
    let response = layer.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(
        (response.status().as_u16(), calls.load(Ordering::Relaxed)),
        (503, 1)
    );
    let config = RetryConfig::builder()
        .max_retry_after(Duration::from_secs(60))
        .build()
        .unwrap();
    layer.handle().reconfigure(&config).unwrap();
    let (inner, _) = upstream("45", 1);
    let start = Instant::now();
    let response = layer.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(45));
}

#[tokio::test(start_paused = true)]
async fn a_saturated_or_http_date_hint_far_ahead_gives_up_too() {
    for hint in ["99999999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"] {
        let layer = http_layer(&RetryConfig::default());
        let (inner, calls) = upstream(hint, u32::MAX);
        let start = Instant::now();
        let response = layer.layer(inner).oneshot(get()).await.unwrap();
        assert_eq!(response.status(), 503, "{hint}");
        assert_eq!(calls.load(Ordering::Relaxed), 1, "{hint}");
        assert_eq!(start.elapsed(), Duration::ZERO, "{hint}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_megabyte_retry_after_is_ignored_and_the_backoff_applies() {
    let long: &'static str = Box::leak("7".repeat(1 << 20).into_boxed_str());
    let config = RetryConfig::builder()
        .backoff(Backoff::fixed(Duration::from_millis(10)))
        .build()
        .unwrap();
    let layer = http_layer(&config);
    let (inner, calls) = upstream(long, 1);
    let start = Instant::now();
    let response = layer.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(10));
}

#[derive(Debug, thiserror::Error)]
#[error("shed, retry in {0:?}")]
struct Shed(Duration);

fn shed_hint(e: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    e.downcast_ref::<Shed>().map(|s| s.0)
}

/// Fails every call with `Shed(hint)`; counts calls.
fn shedding(
    hint: Duration,
) -> (
    impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone,
    Arc<AtomicU32>,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = service_fn({
        let calls = calls.clone();
        move |_: u32| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Err::<u32, _>(BoxError::from(Shed(hint))) }
        }
    });
    (svc, calls)
}

#[tokio::test(start_paused = true)]
async fn an_error_hint_over_max_retry_after_returns_the_error_as_is() {
    let layer = RetryLayer::builder(RetryConfig::default())
        .retry_after_hint(shed_hint)
        .build()
        .unwrap();
    let (inner, calls) = shedding(Duration::from_secs(3600));
    let start = Instant::now();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    let shed = err
        .downcast_ref::<Shed>()
        .expect("the error itself, hint kept");
    assert_eq!(shed.0, Duration::from_secs(3600));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_hint_past_max_elapsed_returns_the_error_as_is_not_a_deadline() {
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_elapsed(Duration::from_secs(3))
            .build()
            .unwrap(),
    )
    .retry_after_hint(shed_hint)
    .build()
    .unwrap();
    let (inner, calls) = shedding(Duration::from_secs(5));
    let start = Instant::now();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert!(err.is::<Shed>(), "{err}");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);

    // a backoff (not a hint) past the deadline is still a DeadlineExceeded
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .backoff(Backoff::fixed(Duration::from_secs(5)))
            .max_elapsed(Duration::from_secs(3))
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let inner = service_fn(|_: u32| async { Err::<u32, _>(BoxError::from("refused")) });
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::DeadlineExceeded { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn hints_are_ignored_when_not_honoured_whatever_their_length() {
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .honor_retry_after(false)
            .backoff(Backoff::fixed(Duration::from_millis(10)))
            .max_attempts(3)
            .build()
            .unwrap(),
    )
    .retry_after_hint(shed_hint)
    .build()
    .unwrap();
    let (inner, calls) = shedding(Duration::from_secs(3600 * 24 * 365));
    let start = Instant::now();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::RetriesExhausted { attempts: 3, .. })
    ));
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(20));
}

/// An upstream whose first call answers `first()` after 10 ms and every later call 200
/// with `grpc-status: 0` after 10 ms; logs when each call arrived.
fn first_fails(
    first: impl Fn() -> http::Response<()> + Clone + Send + 'static,
) -> (
    impl Service<Req, Response = http::Response<()>, Error = BoxError, Future: Send> + Clone,
    Arc<std::sync::Mutex<Vec<Instant>>>,
) {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let svc = service_fn({
        let log = log.clone();
        move |_: Req| {
            let first = first.clone();
            let n = {
                let mut log = log.lock().unwrap();
                log.push(Instant::now());
                log.len()
            };
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let response = if n == 1 {
                    first()
                } else {
                    http::Response::builder()
                        .header("grpc-status", "0")
                        .body(())
                        .unwrap()
                };
                Ok::<_, BoxError>(response)
            }
        }
    });
    (svc, log)
}

/// gRFC A6: pushback on a hedged request delays the next hedge by its wait, and one over
/// `max_retry_after` sends no further hedge; a 503's `Retry-After` does the same. Before,
/// a retryable failure sent the next hedge at once whatever the hint (here at 10 ms).
#[tokio::test(start_paused = true)]
async fn a_hedge_waits_out_the_failures_pushback_or_retry_after() {
    let config = RetryConfig::builder()
        .max_attempts(1)
        .budget(
            tower_prism_retry::BudgetConfig::builder()
                .enabled(false)
                .build()
                .unwrap(),
        )
        .hedge(tower_prism_retry::HedgeConfig::fixed(Duration::from_secs(
            1,
        )))
        .build()
        .unwrap();
    let grpc = RetryLayer::builder(config.clone())
        .clone_request(tower_prism_retry::ReplayIdempotent)
        .classify(tower_prism_core::GrpcClassifier::new())
        .response_hint(tower_prism_retry::GrpcPushback)
        .build()
        .unwrap();
    let http = http_layer(&config);
    let pushed_back = |ms: &'static str| {
        move || {
            http::Response::builder()
                .header("grpc-status", "8")
                .header("grpc-retry-pushback-ms", ms)
                .body(())
                .unwrap()
        }
    };
    let offsets = |log: &std::sync::Mutex<Vec<Instant>>, start: Instant| -> Vec<u128> {
        let log = log.lock().unwrap();
        log.iter().map(|t| (*t - start).as_millis()).collect()
    };

    let (inner, log) = first_fails(pushed_back("2000"));
    let start = Instant::now();
    let response = grpc.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "0");
    assert_eq!(
        offsets(&log, start),
        vec![0, 2010],
        "the hedge after the pushback"
    );
    assert_eq!(grpc.handle().snapshot().hedges_sent, 1);

    let (inner, log) = first_fails(|| {
        http::Response::builder()
            .status(503)
            .header(http::header::RETRY_AFTER, "2")
            .body(())
            .unwrap()
    });
    let start = Instant::now();
    let response = http.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        offsets(&log, start),
        vec![0, 2010],
        "the hedge after Retry-After"
    );

    // a minute is over max_retry_after (30 s): no hedge, the pushed-back answer at once
    let (inner, log) = first_fails(pushed_back("60000"));
    let start = Instant::now();
    let response = grpc.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "8");
    assert_eq!(start.elapsed(), Duration::from_millis(10));
    assert_eq!(offsets(&log, start), vec![0]);
    assert_eq!(grpc.handle().snapshot().hedges_sent, 1, "no new hedge");
}

/// gRFC A6: after a retry that waited out the upstream's pushback, "retry delay will reset
/// to initial backoff for the following retry". Here the second failure asks for 1 s and
/// the third carries no hint: the retry after it waits the first backoff again (100 ms).
/// Before, the schedule ran on from where it was (400 ms, then 800 ms).
#[tokio::test(start_paused = true)]
async fn the_backoff_restarts_after_a_pushback() {
    let config = RetryConfig::builder()
        .max_attempts(5)
        .backoff(
            Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
                .jitter(tower_prism_retry::Jitter::None),
        )
        .budget(
            tower_prism_retry::BudgetConfig::builder()
                .enabled(false)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let layer = RetryLayer::builder(config)
        .retry_after_hint(shed_hint)
        .build()
        .unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let inner = service_fn({
        let log = log.clone();
        move |_: u32| {
            let n = {
                let mut log = log.lock().unwrap();
                log.push(Instant::now());
                log.len()
            };
            async move {
                match n {
                    2 => Err(BoxError::from(Shed(Duration::from_secs(1)))),
                    5 => Ok(n as u32),
                    _ => Err(BoxError::from("refused")),
                }
            }
        }
    });
    assert_eq!(layer.layer(inner).oneshot(1).await.unwrap(), 5);
    let log = log.lock().unwrap();
    let gaps: Vec<u128> = log.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(
        gaps,
        [100, 1000, 100, 200],
        "the schedule restarts after the wait"
    );
}

/// One step of a scripted upstream: after `.0` ms, a response with status `.1` and the
/// headers `.2`.
type Step = (u64, u16, &'static [(&'static str, &'static str)]);

/// An upstream that plays `script`, one step per call, then answers `OK` at once; logs
/// when each call arrived.
fn script(
    script: &'static [Step],
) -> (
    impl Service<Req, Response = http::Response<()>, Error = BoxError, Future: Send> + Clone,
    Arc<std::sync::Mutex<Vec<Instant>>>,
) {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let svc = service_fn({
        let log = log.clone();
        move |_: Req| {
            let n = {
                let mut log = log.lock().unwrap();
                log.push(Instant::now());
                log.len()
            };
            let (ms, status, headers) = script.get(n - 1).copied().unwrap_or((0, 200, OK));
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let mut response = http::Response::builder().status(status);
                for (name, value) in headers {
                    response = response.header(*name, *value);
                }
                Ok::<_, BoxError>(response.body(()).unwrap())
            }
        }
    });
    (svc, log)
}

const OK: &[(&str, &str)] = &[("grpc-status", "0")];
const UNAVAILABLE: &[(&str, &str)] = &[("grpc-status", "14")];
const DO_NOT_RETRY: &[(&str, &str)] = &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "-1")];

/// gRFC A6: a pushback saying not to retry, to one attempt of a hedged call, means "no
/// further hedged requests will be sent"; the attempts already in flight run on and the
/// call takes the first acceptable answer among them, or, when they all fail, the last
/// failure, with no retry. Before, the pushed-back answer ended the call at once (60 ms
/// here) and cancelled the attempt about to succeed; a `Retry-After` over
/// `max_retry_after` stopped the hedges but a retry followed the round.
#[tokio::test(start_paused = true)]
async fn a_do_not_retry_pushback_leaves_the_attempts_in_flight_running() {
    let config = RetryConfig::builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(10)))
        .budget(
            tower_prism_retry::BudgetConfig::builder()
                .enabled(false)
                .build()
                .unwrap(),
        )
        .hedge(tower_prism_retry::HedgeConfig::fixed(Duration::from_millis(50)).max_hedged(2))
        .build()
        .unwrap();
    let grpc = RetryLayer::builder(config.clone())
        .clone_request(tower_prism_retry::ReplayIdempotent)
        .classify(tower_prism_core::GrpcClassifier::new())
        .response_hint(tower_prism_retry::GrpcPushback)
        .build()
        .unwrap();
    let offsets = |log: &std::sync::Mutex<Vec<Instant>>, start: Instant| -> Vec<u128> {
        let log = log.lock().unwrap();
        log.iter().map(|t| (*t - start).as_millis()).collect()
    };

    // the hedge (sent at 50 ms) is pushed back at 60 ms; the original answers at 200 ms
    let (inner, log) = script(&[(200, 200, OK), (10, 200, DO_NOT_RETRY)]);
    let start = Instant::now();
    let response = grpc.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "0");
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(
        offsets(&log, start),
        vec![0, 50],
        "no hedge after the pushback"
    );

    // the original is pushed back at 60 ms; the hedge sent at 50 ms answers at 150 ms
    let (inner, log) = script(&[(60, 200, DO_NOT_RETRY), (100, 200, OK)]);
    let start = Instant::now();
    let response = grpc.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "0");
    assert_eq!(start.elapsed(), Duration::from_millis(150));
    assert_eq!(
        offsets(&log, start),
        vec![0, 50],
        "no hedge after the pushback"
    );
    assert_eq!(grpc.handle().snapshot().cancelled_attempts, 0);

    // the original fails too, retryably: its failure is the answer, and no retry follows
    let (inner, log) = script(&[(200, 200, UNAVAILABLE), (10, 200, DO_NOT_RETRY)]);
    let start = Instant::now();
    let response = grpc.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "14");
    assert!(!response.headers().contains_key("grpc-retry-pushback-ms"));
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(
        offsets(&log, start),
        vec![0, 50],
        "neither a hedge nor a retry"
    );
    let snapshot = grpc.handle().snapshot();
    assert_eq!((snapshot.retries, snapshot.gave_up), (0, 1));

    // the same over HTTP, for a 503 whose Retry-After is over `max_retry_after`
    let http = http_layer(&config);
    let (inner, log) = script(&[(200, 503, &[]), (10, 503, &[("retry-after", YEAR)])]);
    let start = Instant::now();
    let response = http.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(!response.headers().contains_key("retry-after"));
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(
        offsets(&log, start),
        vec![0, 50],
        "neither a hedge nor a retry"
    );
}
