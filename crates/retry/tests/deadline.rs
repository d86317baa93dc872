//! The caller's deadline (a `RequestDeadline` a deadline stage above makes current while it
//! calls the retry stage; here `RequestDeadline::scope` plays that stage) under paused time:
//! no backoff, hint wait or hedge that cannot end before it, attempt timeouts cut to the
//! time left, and the last result returned at once.

mod common;

use std::future::Future;
use std::time::Duration;

use common::{flaky, layer, no_budget, Log, MS};
use tokio::time::Instant;
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::{Outcome, RequestDeadline};
use tower_prism_retry::{Backoff, Error, HedgeConfig, RetryConfig, RetryLayer};

/// Calls `svc` under a deadline `timeout` from now, as a deadline stage would.
async fn call_within<S, Req>(
    svc: &mut S,
    req: Req,
    timeout: Duration,
) -> Result<S::Response, S::Error>
where
    S: Service<Req>,
{
    let ready = svc.ready().await?;
    let future = RequestDeadline::after(timeout).scope(|| ready.call(req));
    future.await
}

fn caller_deadline(err: &BoxError) -> Option<(u32, String)> {
    match err.downcast_ref::<Error>()? {
        Error::CallerDeadline { attempts, last } => Some((*attempts, last.to_string())),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn no_backoff_that_cannot_end_before_the_deadline() {
    let log = Log::default();
    let l = layer(5, Backoff::fixed(MS * 60));
    let mut svc = l.layer(flaky(log.clone(), 10));
    let start = Instant::now();
    let err = call_within(&mut svc, 1, MS * 100).await.unwrap_err();
    // attempt at 0, backoff to 60, attempt; a second backoff would end at 120
    assert_eq!(log.offsets(), vec![0, 60]);
    assert_eq!(
        start.elapsed(),
        MS * 60,
        "the last result comes back at once"
    );
    assert_eq!(caller_deadline(&err), Some((2, "failure 2".into())));
    assert_eq!(l.handle().snapshot().gave_up, 1);
}

#[tokio::test(start_paused = true)]
async fn a_backoff_ending_exactly_at_the_deadline_is_not_started() {
    let log = Log::default();
    let l = layer(5, Backoff::fixed(MS * 50));
    let mut svc = l.layer(flaky(log.clone(), 10));
    let err = call_within(&mut svc, 1, MS * 100).await.unwrap_err();
    assert_eq!(
        log.offsets(),
        vec![0, 50],
        "a retry at 100 would have no time"
    );
    assert_eq!(caller_deadline(&err).map(|e| e.0), Some(2));
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_nothing_changes() {
    let log = Log::default();
    let l = layer(5, Backoff::fixed(MS * 60));
    let mut svc = l.layer(flaky(log.clone(), 10));
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(log.offsets(), vec![0, 60, 120, 180, 240]);
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::RetriesExhausted { attempts: 5, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_is_cut_to_the_time_left() {
    let config = RetryConfig::builder()
        .max_attempts(3)
        .attempt_timeout(Duration::from_secs(1))
        .backoff(Backoff::fixed(MS * 10))
        .budget(no_budget())
        .build()
        .unwrap();
    let l = RetryLayer::from_config(&config).unwrap();
    let log = Log::default();
    let hang = {
        let log = log.clone();
        service_fn(move |_: u32| {
            log.push();
            std::future::pending::<Result<u32, BoxError>>()
        })
    };
    let mut svc = l.layer(hang);
    let start = Instant::now();
    let err = call_within(&mut svc, 1, MS * 100).await.unwrap_err();
    assert_eq!(start.elapsed(), MS * 100);
    assert_eq!(log.count(), 1);
    let Some(Error::CallerDeadline { attempts: 1, last }) = err.downcast_ref::<Error>() else {
        panic!("{err}")
    };
    assert!(
        matches!(
            last.downcast_ref::<Error>(),
            Some(Error::AttemptTimedOut { timeout }) if *timeout == MS * 100
        ),
        "{last}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_hint_past_the_deadline_returns_the_answer_now() {
    // answers 503 with a hint of 200 ms; the deadline is 100 ms away
    let config = RetryConfig::builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(MS * 10))
        .budget(no_budget())
        .build()
        .unwrap();
    let l = RetryLayer::builder(config)
        .classify(|r: Result<&u32, &BoxError>| match r {
            Ok(503) => Outcome::Failure { retryable: true },
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure { retryable: true },
        })
        .response_hint(|_: &u32| Some(MS * 200))
        .build()
        .unwrap();
    let log = Log::default();
    let busy = {
        let log = log.clone();
        service_fn(move |_: u32| {
            log.push();
            async { Ok::<u32, BoxError>(503) }
        })
    };
    let mut svc = l.layer(busy);
    let start = Instant::now();
    assert_eq!(call_within(&mut svc, 1, MS * 100).await.unwrap(), 503);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(log.count(), 1);
    // with time for the hint, it is waited out
    let start = Instant::now();
    let _ = call_within(&mut svc, 1, MS * 1000).await;
    assert_eq!(
        start.elapsed(),
        MS * 400,
        "two hinted waits, then out of attempts"
    );
}

#[tokio::test(start_paused = true)]
async fn no_hedge_that_cannot_be_sent_before_the_deadline() {
    let config = RetryConfig::builder()
        .max_attempts(1)
        .budget(no_budget())
        .hedge(HedgeConfig::fixed(MS * 50))
        .build()
        .unwrap();
    let l = RetryLayer::from_config(&config).unwrap();
    let log = Log::default();
    let slow = {
        let log = log.clone();
        service_fn(move |n: u32| {
            log.push();
            tokio::time::sleep(MS * 80).map(move |()| Ok::<u32, BoxError>(n))
        })
    };
    let mut svc = l.layer(slow);
    assert_eq!(call_within(&mut svc, 1, MS * 40).await.unwrap(), 1);
    assert_eq!(
        log.count(),
        1,
        "the hedge would go at 50, after the deadline"
    );
    assert_eq!(call_within(&mut svc, 2, MS * 200).await.unwrap(), 2);
    assert_eq!(
        log.offsets(),
        vec![0, 80, 130],
        "a hedge at 50 ms into the second call"
    );
}

/// A hedge whose delay would end after the deadline is not sent at the delay, but one sent
/// at once when an attempt fails may still answer in time; after the deadline, none goes.
#[tokio::test(start_paused = true)]
async fn a_hedge_at_a_failure_goes_while_the_deadline_allows() {
    let config = RetryConfig::builder()
        .max_attempts(1)
        .budget(no_budget())
        .hedge(HedgeConfig::fixed(MS * 50))
        .build()
        .unwrap();
    let l = RetryLayer::from_config(&config).unwrap();
    let log = Log::default();
    let fails_first = |fail_ms: u32| {
        let log = log.clone();
        service_fn(move |n: u32| {
            let first = log.push() == 1;
            let ms = if first { fail_ms } else { 10 };
            tokio::time::sleep(MS * ms).map(move |()| {
                if first {
                    Err::<u32, BoxError>("refused".into())
                } else {
                    Ok(n)
                }
            })
        })
    };
    let mut svc = l.layer(fails_first(10));
    let start = Instant::now();
    assert_eq!(call_within(&mut svc, 1, MS * 40).await.unwrap(), 1);
    assert_eq!(log.offsets(), vec![0, 10], "the hedge at the failure");
    assert_eq!(start.elapsed(), MS * 20);
    log.0.lock().unwrap().clear();
    let mut svc = l.layer(fails_first(45));
    let err = call_within(&mut svc, 1, MS * 40).await.unwrap_err();
    assert_eq!(err.to_string(), "refused");
    assert_eq!(log.count(), 1, "no hedge after the deadline");
}

/// `Future::map` without futures-util.
trait MapExt: Future + Sized {
    fn map<T>(self, f: impl FnOnce(Self::Output) -> T) -> impl Future<Output = T> {
        async move { f(self.await) }
    }
}
impl<F: Future> MapExt for F {}

#[tokio::test(start_paused = true)]
async fn every_attempt_runs_with_the_callers_deadline_ambient() {
    // What the service below sees as the ambient deadline, attempt by attempt: retries are
    // sent from `poll`, outside the `call` the deadline was made current for.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let inner = service_fn(move |_request: u32| {
        record.lock().unwrap().push(RequestDeadline::current());
        async { Err::<u32, BoxError>("down".into()) }
    });
    let mut svc = layer(3, Backoff::fixed(MS * 10)).layer(inner);
    let deadline = RequestDeadline::after(MS * 500);
    let ready = svc.ready().await.unwrap();
    let future = deadline.scope(|| ready.call(1));
    future.await.unwrap_err();
    assert_eq!(*seen.lock().unwrap(), vec![Some(deadline); 3]);
    assert_eq!(
        RequestDeadline::current(),
        None,
        "the scope ends with each call"
    );
}
