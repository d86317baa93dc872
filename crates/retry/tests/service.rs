//! The retry service under paused time: schedules, deadlines, hints, budget, cancellation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{advance, Instant};
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::{HttpClassifier, Outcome};
use tower_prism_retry::{
    Backoff, BudgetConfig, Error, Jitter, ReplayRequest, RetryConfig, RetryLayer,
};

const MS: Duration = Duration::from_millis(1);

/// A log of when each attempt arrived, shared with the test.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Instant>>>);

impl Log {
    fn push(&self) -> usize {
        let mut v = self.0.lock().unwrap();
        v.push(Instant::now());
        v.len()
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    /// Offsets of attempts from the first, in ms.
    fn offsets(&self) -> Vec<u128> {
        let v = self.0.lock().unwrap();
        v.iter().map(|t| (*t - v[0]).as_millis()).collect()
    }
    /// Gaps between attempts.
    fn gaps(&self) -> Vec<Duration> {
        let v = self.0.lock().unwrap();
        v.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// Fails the first `failures` attempts (with an error), then echoes.
fn flaky(
    log: Log,
    failures: usize,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(move |n: u32| {
        let attempt = log.push();
        async move {
            if attempt <= failures {
                Err(BoxError::from(format!("failure {attempt}")))
            } else {
                Ok(n)
            }
        }
    })
}

fn no_budget() -> BudgetConfig {
    BudgetConfig::builder().enabled(false).build().unwrap()
}

async fn run<S: Service<u32, Response = u32, Error = BoxError>>(
    svc: &mut S,
    n: u32,
) -> Result<u32, BoxError> {
    svc.ready().await?.call(n).await
}

fn layer(attempts: u32, backoff: Backoff) -> RetryLayer {
    RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(attempts)
            .backoff(backoff)
            .budget(no_budget())
            .build()
            .unwrap(),
    )
    .build()
    .unwrap()
}

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
async fn budget_exhaustion_and_recovery() {
    let budget = BudgetConfig::builder()
        .ratio(0.5)
        .min_per_second(0)
        .window(Duration::from_secs(10))
        .build()
        .unwrap();
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(2)
            .backoff(Backoff::none())
            .budget(budget)
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    // one first attempt earns half a retry: not enough
    let log = Log::default();
    let mut failing = layer.layer(flaky(log.clone(), 1000));
    let err = run(&mut failing, 1).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::BudgetExhausted { attempts: 1, .. })
    ));
    assert_eq!(log.count(), 1);

    // successful traffic (through a clone of another service of the same layer) refills it
    let mut healthy = layer.layer(flaky(Log::default(), 0));
    for _ in 0..3 {
        run(&mut healthy, 1).await.unwrap();
    }
    let err = run(&mut failing, 1).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::RetriesExhausted { attempts: 2, .. })
    ));
    assert_eq!(log.count(), 3, "the retry is allowed now");
    assert!(
        (layer.handle().budget().available() - 1.5).abs() < 1e-9,
        "4 halves earned, 1 spent"
    );

    // the window passes: the debt and deposits expire
    advance(Duration::from_secs(11)).await;
    for _ in 0..2 {
        run(&mut healthy, 1).await.unwrap();
    }
    run(&mut failing, 1).await.unwrap_err();
    assert_eq!(log.count(), 5, "retrying again after recovery");
}

#[tokio::test(start_paused = true)]
async fn clone_request_closure_decides_what_is_retried() {
    #[derive(Debug)]
    struct Job {
        id: u32,
        safe: bool,
    }
    let log = Log::default();
    let inner = service_fn({
        let log = log.clone();
        move |job: Job| {
            log.push();
            async move { Err::<u32, _>(BoxError::from(format!("job {} failed", job.id))) }
        }
    });
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::none())
            .no_budget()
            .build()
            .unwrap(),
    )
    .clone_request(|job: &Job| {
        job.safe.then_some(Job {
            id: job.id,
            safe: true,
        })
    })
    .build()
    .unwrap();
    let mut svc = layer.layer(inner);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Job { id: 1, safe: false })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "job 1 failed");
    assert_eq!(log.count(), 1);
    svc.ready()
        .await
        .unwrap()
        .call(Job { id: 2, safe: true })
        .await
        .unwrap_err();
    assert_eq!(log.count(), 4);
}

/// A `ReplayRequest` whose `replay` goes back on its `can_replay` gets a typed error for the
/// retry it could not send, not a panic or a hang.
#[tokio::test(start_paused = true)]
async fn a_replay_that_contradicts_can_replay_is_a_typed_error() {
    #[derive(Clone)]
    struct Fickle(Arc<Mutex<u32>>);
    impl ReplayRequest<u32> for Fickle {
        fn replay(&self, req: &u32) -> Option<u32> {
            let mut copies = self.0.lock().unwrap();
            *copies += 1;
            (*copies == 1).then_some(*req) // the template only
        }
        fn can_replay(&self, _req: &u32) -> bool {
            true
        }
    }
    let log = Log::default();
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::none())
            .no_budget()
            .build()
            .unwrap(),
    )
    .clone_request(Fickle(Arc::default()))
    .build()
    .unwrap();
    let mut svc = layer.layer(flaky(log.clone(), 5));
    let err = run(&mut svc, 7).await.unwrap_err();
    let err = err.downcast_ref::<Error>().expect("a retry error");
    assert!(
        matches!(err, Error::ReplayRefused { attempt: 2 }),
        "{err:?}"
    );
    assert_eq!(log.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_cancels_retries() {
    let log = Log::default();
    let mut svc = layer(5, Backoff::fixed(MS * 100)).layer(flaky(log.clone(), 100));
    svc.ready().await.unwrap();
    let mut future = Box::pin(svc.call(1));
    tokio_test::assert_pending!(futures_poll(&mut future));
    assert_eq!(log.count(), 1);
    advance(MS * 100).await;
    tokio_test::assert_pending!(futures_poll(&mut future));
    assert_eq!(log.count(), 2);
    drop(future);
    advance(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(log.count(), 2, "no attempt after the caller went away");

    // an attempt in flight is dropped too
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    struct Flag(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let inner = service_fn({
        let dropped = dropped.clone();
        move |n: u32| {
            let flag = Flag(dropped.clone());
            async move {
                let _flag = flag;
                std::future::pending::<()>().await;
                Ok::<_, BoxError>(n)
            }
        }
    });
    let mut svc = layer(3, Backoff::none()).layer(inner);
    svc.ready().await.unwrap();
    let mut future = Box::pin(svc.call(1));
    tokio_test::assert_pending!(futures_poll(&mut future));
    drop(future);
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
}

fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(f).poll(&mut cx)
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_to_new_calls() {
    let l = layer(2, Backoff::none());
    let log = Log::default();
    let mut svc = l.layer(flaky(log.clone(), 100));
    run(&mut svc, 1).await.unwrap_err();
    assert_eq!(log.count(), 2);
    let config = RetryConfig::builder()
        .max_attempts(4)
        .backoff(Backoff::fixed(MS * 7))
        .budget(no_budget())
        .build()
        .unwrap();
    l.handle().reconfigure(&config).unwrap();
    assert_eq!(l.handle().snapshot().max_attempts, 4);
    *log.0.lock().unwrap() = Vec::new();
    run(&mut svc, 1).await.unwrap_err();
    assert_eq!(log.offsets(), [0, 7, 14, 21]);
    let mut bad = config.clone();
    bad.max_attempts = 0;
    assert_eq!(
        l.handle().reconfigure(&bad).unwrap_err().field(),
        "max_attempts"
    );
    assert_eq!(
        l.handle().snapshot().max_attempts,
        4,
        "a bad config changes nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn from_config_and_clones_share_state() {
    let config: RetryConfig = toml::from_str(
        r#"
        max_attempts = 2
        backoff = { kind = "fixed", base = "5ms", max = "5ms", jitter = "none" }
        budget = { ratio = 0.5, min_per_second = 0 }
        "#,
    )
    .unwrap();
    let l = RetryLayer::from_config(&config).unwrap();
    let log = Log::default();
    let mut a = l.layer(flaky(log.clone(), 100));
    let mut b = a.clone();
    // half a retry earned: not enough
    let err = run(&mut a, 1).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::BudgetExhausted { .. })
    ));
    // the clone's first attempt adds the other half to the same budget
    let err = run(&mut b, 1).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::RetriesExhausted { attempts: 2, .. })
    ));
    assert_eq!(log.offsets(), [0, 0, 5]);
    let snap = l.handle().snapshot();
    assert_eq!((snap.retries, snap.gave_up), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn retries_wait_for_inner_readiness() {
    // An inner service that is ready only every other poll_ready (a clone shares the gate).
    #[derive(Clone)]
    struct Gated {
        open: Arc<std::sync::atomic::AtomicBool>,
        log: Log,
    }
    impl Service<u32> for Gated {
        type Response = u32;
        type Error = BoxError;
        type Future = std::future::Ready<Result<u32, BoxError>>;
        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), BoxError>> {
            if self.open.load(std::sync::atomic::Ordering::SeqCst) {
                std::task::Poll::Ready(Ok(()))
            } else {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }
        fn call(&mut self, n: u32) -> Self::Future {
            let attempt = self.log.push();
            std::future::ready(if attempt == 1 {
                Err("first".into())
            } else {
                Ok(n)
            })
        }
    }
    let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let log = Log::default();
    let mut svc = layer(2, Backoff::none()).layer(Gated {
        open: open.clone(),
        log: log.clone(),
    });
    svc.ready().await.unwrap();
    open.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut future = Box::pin(svc.call(5));
    tokio_test::assert_pending!(futures_poll(&mut future));
    assert_eq!(log.count(), 1, "the retry waits for readiness");
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        tokio_test::assert_ready!(futures_poll(&mut future)).unwrap(),
        5
    );
}
