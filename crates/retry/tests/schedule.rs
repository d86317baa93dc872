//! The retry service under paused time, when and whether it retries: schedules and jitter,
//! exhausted attempts, what the classifier says, deadlines, attempt timeouts and the hints
//! of `Retry-After` headers and errors. Budget, replay, cancellation and reconfiguration are
//! in `service.rs`.

mod common;

use std::time::Duration;

use common::{flaky, layer, run, Log, MS};
use tokio::time::Instant;
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::{HttpClassifier, Outcome};
use tower_prism_retry::{Backoff, Error, Jitter, RetryConfig, RetryLayer};

#[tokio::test(start_paused = true)]
async fn success_needs_one_attempt() {
    let log = Log::default();
    let l = layer(3, Backoff::fixed(MS * 10));
    let mut svc = l.layer(flaky(log.clone(), 0));
    assert_eq!(run(&mut svc, 7).await.unwrap(), 7);
    assert_eq!(log.count(), 1);
    assert_eq!(l.handle().snapshot().retries, 0);
}

#[tokio::test(start_paused = true)]
async fn fixed_linear_exponential_schedules() {
    let cases = [
        (Backoff::none(), vec![0, 0, 0, 0]),
        (Backoff::fixed(MS * 30), vec![0, 30, 60, 90]),
        (Backoff::linear(MS * 10, MS * 25), vec![0, 10, 30, 55]),
        (
            Backoff::exponential(MS * 10, MS * 1000).jitter(Jitter::None),
            vec![0, 10, 30, 70],
        ),
        (
            Backoff::exponential(MS * 10, MS * 15).jitter(Jitter::None),
            vec![0, 10, 25, 40],
        ),
    ];
    for (backoff, expected) in cases {
        let log = Log::default();
        let mut svc = layer(4, backoff).layer(flaky(log.clone(), 3));
        assert_eq!(run(&mut svc, 1).await.unwrap(), 1);
        assert_eq!(log.offsets(), expected, "{backoff:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn jittered_schedules_stay_in_bounds_and_vary() {
    let base = MS * 100;
    let max = MS * 10_000;
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let backoff = Backoff::exponential(base, max).jitter(jitter);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let log = Log::default();
            let mut svc = layer(5, backoff).layer(flaky(log.clone(), 4));
            run(&mut svc, 1).await.unwrap();
            let gaps = log.gaps();
            assert_eq!(gaps.len(), 4);
            let mut previous = Duration::ZERO;
            for (i, gap) in gaps.iter().enumerate() {
                let scheduled = base * (1 << i);
                let (low, high) = match jitter {
                    Jitter::Full => (Duration::ZERO, scheduled),
                    Jitter::Equal => (scheduled / 2, scheduled),
                    _ => (base, previous.max(base) * 3),
                };
                // paused time lands on whole milliseconds: allow 1 ms of rounding
                assert!(
                    *gap + MS >= low && *gap <= high + MS,
                    "{jitter:?} retry {}: {gap:?} not in [{low:?}, {high:?}]",
                    i + 1
                );
                previous = *gap;
            }
            seen.insert(gaps[0]);
        }
        assert!(seen.len() > 5, "{jitter:?} jitter hardly varies: {seen:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_wrap_the_last_error() {
    let log = Log::default();
    let l = layer(3, Backoff::fixed(MS));
    let mut svc = l.layer(flaky(log.clone(), 10));
    let err = run(&mut svc, 1).await.unwrap_err();
    let err = err.downcast_ref::<Error>().unwrap();
    assert!(
        matches!(err, Error::RetriesExhausted { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(err.last().unwrap().to_string(), "failure 3");
    assert_eq!(log.count(), 3);
    let snap = l.handle().snapshot();
    assert_eq!((snap.retries, snap.gave_up), (2, 1));

    // with a single attempt there is nothing to wrap
    let log = Log::default();
    let mut svc = layer(1, Backoff::fixed(MS)).layer(flaky(log.clone(), 10));
    let err = run(&mut svc, 1).await.unwrap_err();
    assert_eq!(err.to_string(), "failure 1");
    assert!(err.downcast_ref::<Error>().is_none());
}

#[tokio::test(start_paused = true)]
async fn retryable_responses_come_back_as_is_when_attempts_run_out() {
    let log = Log::default();
    let inner = service_fn({
        let log = log.clone();
        move |_: u32| {
            let n = log.push();
            async move {
                let status = if n < 5 { 503 } else { 200 };
                Ok::<_, BoxError>(http::Response::builder().status(status).body(n).unwrap())
            }
        }
    });
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::fixed(MS))
            .no_budget()
            .build()
            .unwrap(),
    )
    .classify(HttpClassifier)
    .build()
    .unwrap();
    let mut svc = layer.layer(inner);
    let response = svc.ready().await.unwrap().call(0).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(*response.body(), 3, "the last attempt's response");
    assert_eq!(log.count(), 3);
    // 404 is a success for the classifier: never retried
    let inner = service_fn(|_: u32| async {
        Ok::<_, BoxError>(http::Response::builder().status(404).body(0).unwrap())
    });
    let mut svc = layer.layer(inner);
    assert_eq!(
        svc.ready().await.unwrap().call(0).await.unwrap().status(),
        404
    );
}

#[tokio::test(start_paused = true)]
async fn fatal_and_not_retryable_return_at_once() {
    for outcome in [Outcome::Fatal, Outcome::NOT_RETRYABLE] {
        let log = Log::default();
        let layer = RetryLayer::builder(
            RetryConfig::builder()
                .max_attempts(5)
                .no_budget()
                .build()
                .unwrap(),
        )
        .classify(move |r: Result<&u32, &BoxError>| match r {
            Ok(_) => Outcome::Success,
            Err(_) => outcome,
        })
        .build()
        .unwrap();
        let mut svc = layer.layer(flaky(log.clone(), 10));
        let err = run(&mut svc, 1).await.unwrap_err();
        assert_eq!(err.to_string(), "failure 1", "returned unwrapped");
        assert_eq!(log.count(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_stops_retries_that_would_start_too_late() {
    let log = Log::default();
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(10)
            .backoff(Backoff::fixed(MS * 40))
            .max_elapsed(MS * 100)
            .no_budget()
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let mut svc = layer.layer(flaky(log.clone(), 10));
    let start = Instant::now();
    let err = run(&mut svc, 1).await.unwrap_err();
    // attempts at 0, 40, 80; one at 120 would be past 100 ms
    assert_eq!(log.offsets(), [0, 40, 80]);
    assert_eq!(start.elapsed(), MS * 80);
    match err.downcast_ref::<Error>().unwrap() {
        Error::DeadlineExceeded {
            attempts,
            max_elapsed,
            ..
        } => assert_eq!((*attempts, *max_elapsed), (3, MS * 100)),
        other => panic!("{other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_abandons_slow_attempts() {
    let log = Log::default();
    let inner = service_fn({
        let log = log.clone();
        move |n: u32| {
            let attempt = log.push();
            async move {
                if attempt < 3 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, BoxError>(n)
            }
        }
    });
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::fixed(MS * 5))
            .attempt_timeout(MS * 50)
            .no_budget()
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let mut svc = layer.layer(inner);
    assert_eq!(run(&mut svc, 9).await.unwrap(), 9);
    assert_eq!(log.offsets(), [0, 55, 110]);

    // every attempt too slow: the timeout error is the last one
    let slow = service_fn(|n: u32| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, BoxError>(n)
    });
    let mut svc = layer.layer(slow);
    let err = run(&mut svc, 1).await.unwrap_err();
    let err = err.downcast_ref::<Error>().unwrap();
    let last = err.last().unwrap().downcast_ref::<Error>().unwrap();
    assert!(matches!(last, Error::AttemptTimedOut { timeout } if *timeout == MS * 50));
}

#[tokio::test(start_paused = true)]
async fn retry_after_header_is_honoured_and_capped_by_max_elapsed() {
    let log = Log::default();
    let inner = service_fn({
        let log = log.clone();
        move |_: u32| {
            let n = log.push();
            async move {
                let response = if n == 1 {
                    http::Response::builder()
                        .status(503)
                        .header("retry-after", "2")
                        .body(())
                } else {
                    http::Response::builder().status(200).body(())
                };
                Ok::<_, BoxError>(response.unwrap())
            }
        }
    });
    let config = RetryConfig::builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(MS * 10))
        .no_budget();
    let layer = |config: tower_prism_retry::RetryConfigBuilder| {
        RetryLayer::builder(config.build().unwrap())
            .classify(HttpClassifier)
            .response_hint(tower_prism_retry::RetryAfterHeader)
            .build()
            .unwrap()
    };
    let mut svc = layer(config.clone()).layer(inner.clone());
    let response = svc.ready().await.unwrap().call(0).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(log.offsets(), [0, 2000]);

    // a hint beyond max_elapsed gives up with the 503 itself
    let log2 = Log::default();
    *log.0.lock().unwrap() = Vec::new();
    let mut svc = layer(config.clone().max_elapsed(Duration::from_secs(1))).layer(inner.clone());
    let response = svc.ready().await.unwrap().call(0).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(log.count(), 1);
    drop(log2);

    // and ignored when told so
    *log.0.lock().unwrap() = Vec::new();
    let mut svc = layer(config.honor_retry_after(false)).layer(inner);
    svc.ready().await.unwrap().call(0).await.unwrap();
    assert_eq!(log.offsets(), [0, 10]);
}

#[derive(Debug, thiserror::Error)]
#[error("shed, retry in {0:?}")]
struct Shed(Duration);

fn shed_hint(e: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    e.downcast_ref::<Shed>().map(|s| s.0)
}

#[tokio::test(start_paused = true)]
async fn error_hints_are_honoured() {
    let log = Log::default();
    let inner = service_fn({
        let log = log.clone();
        move |n: u32| {
            let attempt = log.push();
            async move {
                if attempt == 1 {
                    Err(BoxError::from(Shed(MS * 300)))
                } else {
                    Ok(n)
                }
            }
        }
    });
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .backoff(Backoff::fixed(MS * 10))
            .no_budget()
            .build()
            .unwrap(),
    )
    .retry_after_hint(shed_hint)
    .build()
    .unwrap();
    let mut svc = layer.layer(inner);
    run(&mut svc, 1).await.unwrap();
    assert_eq!(log.offsets(), [0, 300]);
}

#[tokio::test(start_paused = true)]
async fn no_wait_outlasts_max_elapsed_when_attempts_time_out() {
    // `max_elapsed` counts the attempts' own time: a retry whose backoff would end past
    // it is not slept for, the call ends when the last attempt times out.
    let log = Log::default();
    let silent = service_fn({
        let log = log.clone();
        move |n: u32| {
            log.push();
            async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, BoxError>(n)
            }
        }
    });
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(10)
            .backoff(Backoff::fixed(MS * 100))
            .attempt_timeout(MS * 300)
            .max_elapsed(MS * 1000)
            .no_budget()
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let start = Instant::now();
    let err = layer.layer(silent).oneshot(1).await.unwrap_err();
    // attempts at 0, 400, 800; the third times out at 1100, past the deadline: no sleep
    assert_eq!(log.offsets(), [0, 400, 800]);
    assert_eq!(start.elapsed(), MS * 1100);
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::DeadlineExceeded { attempts: 3, .. })
    ));
}
