//! The retry service under paused time: the retry budget, replaying requests, cancellation,
//! hot reconfiguration, shared state and inner readiness. When and whether it retries is in
//! `schedule.rs`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{flaky, layer, no_budget, run, Log, MS};
use tokio::time::advance;
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_retry::{Backoff, BudgetConfig, Error, ReplayRequest, RetryConfig, RetryLayer};

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_and_recovery() {
    // per first attempt only
    let budget = BudgetConfig::builder()
        .ratio(0.5)
        .success_ratio(0.0)
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
async fn by_default_successes_pay_for_retries_and_failures_earn_nothing() {
    let budget = BudgetConfig::builder().min_per_second(0).build().unwrap();
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
    let log = Log::default();
    let mut failing = layer.layer(flaky(log.clone(), 1000));
    for _ in 0..5 {
        let err = run(&mut failing, 1).await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Error>(),
            Some(Error::BudgetExhausted { attempts: 1, .. })
        ));
    }
    assert_eq!(log.count(), 5, "failures earn no retry");
    // two successes (the second attempt of a call counts too) earn one retry
    let mut healthy = layer.layer(flaky(Log::default(), 0));
    run(&mut healthy, 1).await.unwrap();
    let second_try = Log::default();
    run(&mut layer.layer(flaky(second_try.clone(), 1)), 1)
        .await
        .unwrap_err();
    assert_eq!(second_try.count(), 1, "half a retry is not enough");
    run(&mut healthy, 1).await.unwrap();
    let third_try = Log::default();
    let mut flaky_once = layer.layer(flaky(third_try.clone(), 1));
    assert_eq!(run(&mut flaky_once, 1).await.unwrap(), 1);
    assert_eq!(third_try.count(), 2, "retried once");
    assert!(
        (layer.handle().budget().available() - 0.5).abs() < 1e-9,
        "three successes earned one and a half retries, one spent"
    );
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

/// A `max_elapsed` a reload adds stops the calls already retrying too (an incident's first
/// lever): a call that began without one never read when it began, so it counts from its
/// first retry after the reload. It retried to its last attempt.
#[tokio::test(start_paused = true)]
async fn max_elapsed_set_by_a_reload_stops_a_call_in_flight() {
    let config = RetryConfig::builder()
        .max_attempts(10)
        .backoff(Backoff::fixed(MS * 100))
        .budget(no_budget())
        .build()
        .unwrap();
    let l = RetryLayer::builder(config.clone()).build().unwrap();
    let log = Log::default();
    let mut svc = l.layer(flaky(log.clone(), 100));
    let call = run(&mut svc, 1);
    let reload = async {
        tokio::time::sleep(MS * 50).await;
        let mut tighter = config.clone();
        tighter.max_elapsed = Some(MS * 150);
        l.handle().reconfigure(&tighter).unwrap();
    };
    let (result, ()) = tokio::join!(call, reload);
    result.unwrap_err();
    // Attempts at 0 and 100; the retry after the one at 100 is the first since the reload
    // (elapsed counts from then); after the one at 200, a retry at 300 would start 200 ms
    // in, past 150 ms.
    assert_eq!(log.offsets(), [0, 100, 200]);
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

/// A stage below the retry that refuses the first attempt at once (a concurrency limit
/// shedding it) is not refusing the request, which the retry may send again: a rate limit
/// above the retry must keep the request's tokens, so the refusal is hidden from it.
#[tokio::test(start_paused = true)]
async fn a_refusal_of_the_first_attempt_below_is_hidden_from_the_stages_above() {
    use tower_prism_core::internal::refusal;

    let refusing = service_fn(|n: u32| {
        refusal::refused();
        async move { Err::<u32, BoxError>(format!("refused {n}").into()) }
    });
    let mut svc = layer(3, Backoff::none()).layer(refusing);
    let svc = svc.ready().await.unwrap();
    let mark = refusal::Mark::now();
    let future = svc.call(1);
    assert!(
        !mark.refused_since(),
        "the refusal reached the stages above"
    );
    assert!(future.await.is_err());
    // Without a retry stage between, the same refusal is seen.
    let mark = refusal::Mark::now();
    let bare = tower::service_fn(|_: u32| {
        refusal::refused();
        async { Ok::<u32, BoxError>(0) }
    })
    .call(1);
    assert!(mark.refused_since());
    assert_eq!(bare.await.unwrap(), 0);
}
