//! The concurrency limit as a service, with paused time: fail-fast and waiting admission,
//! permits released on completion and on drop, the limit moving with failures and latency
//! within its bounds, hot reconfiguration, and a proptest that in-flight never passes the
//! limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::oneshot;
use tokio::time::sleep;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::BoxError;
use tower::{service_fn, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::{DefaultClassifier, Outcome};
use tower_prism_limit::concurrency::{
    AimdConfig, ConcurrencyConfig, ConcurrencyLimit, ConcurrencyLimitLayer, ConcurrencyLimiter,
    GradientConfig,
};
use tower_prism_limit::Error;

type Reply = Result<u32, String>;

/// An inner service whose calls finish when the test says so (each request carries its
/// own reply channel) and which counts the calls running inside it.
#[derive(Clone, Default)]
struct Gate {
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

struct Leave(Arc<AtomicUsize>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service<oneshot::Receiver<Reply>> for Gate {
    type Response = u32;
    type Error = String;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, reply: oneshot::Receiver<Reply>) -> Self::Future {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let leave = Leave(self.active.clone());
        Box::pin(async move {
            let _leave = leave;
            reply.await.unwrap_or_else(|_| Err("sender dropped".into()))
        })
    }
}

impl Gate {
    fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

fn concurrency_error(err: &BoxError) -> &Error {
    err.downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not a Error: {err}"))
}

fn fixed(limit: u32) -> ConcurrencyLimitLayer {
    ConcurrencyLimitLayer::from_config(&ConcurrencyConfig::fixed(limit)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn over_the_limit_fails_fast_from_the_future_not_poll_ready() {
    let gate = Gate::default();
    let layer = fixed(2);
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(gate.clone());

    let (tx1, rx1) = oneshot::channel();
    let (_tx2, rx2) = oneshot::channel();
    let mut first = task::spawn(svc.ready().await.unwrap().call(rx1));
    let mut second = task::spawn(svc.ready().await.unwrap().call(rx2));
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    assert_eq!(gate.active(), 2);

    // poll_ready is still ready: the rejection comes from the third call's future.
    let mut ready = task::spawn(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    assert_ready_ok!(ready.poll());
    drop(ready);
    let (_tx3, rx3) = oneshot::channel();
    let mut third = task::spawn(svc.call(rx3));
    let err = assert_ready!(third.poll()).unwrap_err();
    assert_eq!(
        concurrency_error(&err),
        &Error::ConcurrencyLimited { limit: 2 }
    );
    assert_eq!(
        gate.active(),
        2,
        "the rejected call never reached the inner service"
    );

    tx1.send(Ok(7)).unwrap();
    assert_eq!(assert_ready!(first.poll()).unwrap(), 7);
    assert_eq!(limiter.snapshot().in_flight, 1);
    let (_tx4, rx4) = oneshot::channel();
    let mut fourth = task::spawn(svc.ready().await.unwrap().call(rx4));
    assert_pending!(fourth.poll());
    assert_eq!(gate.active(), 2);
    assert_eq!(gate.peak.load(Ordering::SeqCst), 2);
}

/// A fixed limit of one permit over a [`Gate`], waiting up to `max_wait` for it: the gate,
/// the shared limiter and the service.
fn one_permit_waiting(
    max_wait: Duration,
) -> (
    Gate,
    ConcurrencyLimiter,
    ConcurrencyLimit<Gate, DefaultClassifier>,
) {
    let gate = Gate::default();
    let layer = ConcurrencyLimitLayer::from_config(&{
        let mut c = ConcurrencyConfig::fixed(1);
        c.max_wait = Some(max_wait);
        c
    })
    .unwrap();
    let limiter = layer.handle().clone();
    (gate.clone(), limiter, layer.layer(gate))
}

#[tokio::test(start_paused = true)]
async fn dropped_futures_release_their_permits() {
    let (gate, limiter, mut svc) = one_permit_waiting(Duration::from_secs(1));

    // A called future, dropped mid-flight.
    let (_tx, rx) = oneshot::channel();
    let mut running = task::spawn(svc.ready().await.unwrap().call(rx));
    assert_pending!(running.poll());
    assert_eq!(limiter.snapshot().in_flight, 1);

    // A waiting future, dropped while waiting.
    let (_tx_w, rx_w) = oneshot::channel();
    let mut waiting = task::spawn(svc.ready().await.unwrap().call(rx_w));
    assert_pending!(waiting.poll());
    assert_eq!(limiter.snapshot().waiting, 1);
    drop(waiting);
    assert_eq!(limiter.snapshot().waiting, 0);

    drop(running);
    assert_eq!(limiter.snapshot().in_flight, 0);
    assert_eq!(gate.active(), 0);

    // A future that was never polled holds its permit from `call` and frees it on drop.
    let (_tx, rx) = oneshot::channel();
    let unpolled = svc.ready().await.unwrap().call(rx);
    assert_eq!(limiter.snapshot().in_flight, 1);
    drop(unpolled);
    assert_eq!(limiter.snapshot().in_flight, 0);

    let (tx, rx) = oneshot::channel();
    let mut next = task::spawn(svc.ready().await.unwrap().call(rx));
    assert_pending!(next.poll());
    tx.send(Ok(1)).unwrap();
    assert_eq!(assert_ready!(next.poll()).unwrap(), 1);
    assert_eq!(limiter.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_takes_the_freed_permit_or_times_out() {
    let (gate, limiter, mut svc) = one_permit_waiting(Duration::from_millis(100));

    let (tx1, rx1) = oneshot::channel();
    let mut first = task::spawn(svc.ready().await.unwrap().call(rx1));
    assert_pending!(first.poll());
    let (tx2, rx2) = oneshot::channel();
    let mut second = task::spawn(svc.ready().await.unwrap().call(rx2));
    assert_pending!(second.poll());
    assert_eq!(
        gate.active(),
        1,
        "the waiter has not called the inner service"
    );

    sleep(Duration::from_millis(40)).await;
    tx1.send(Ok(1)).unwrap();
    assert_eq!(assert_ready!(first.poll()).unwrap(), 1);
    assert!(second.is_woken(), "the finished call wakes the waiter");
    assert_pending!(second.poll());
    assert_eq!(gate.active(), 1, "the waiter now runs in the inner service");
    assert_eq!(limiter.snapshot().in_flight, 1);

    // A third request waits the full 100 ms and gives up with a typed error.
    let (_tx3, rx3) = oneshot::channel();
    let third = svc.ready().await.unwrap().call(rx3);
    let started = tokio::time::Instant::now();
    let err = third.await.unwrap_err();
    assert_eq!(
        concurrency_error(&err),
        &Error::ConcurrencyTimeout {
            waited: Duration::from_millis(100)
        }
    );
    assert_eq!(started.elapsed(), Duration::from_millis(100));

    tx2.send(Ok(2)).unwrap();
    assert_eq!(assert_ready!(second.poll()).unwrap(), 2);
    assert_eq!(limiter.snapshot().in_flight, 0);
}

/// A request for the sleeping service: how long the call takes and whether it fails.
#[derive(Clone, Copy)]
struct Job {
    delay: Duration,
    fail: bool,
}

fn job(ms: u64, fail: bool) -> Job {
    Job {
        delay: Duration::from_millis(ms),
        fail,
    }
}

/// Runs `n` copies of `job` at once through `svc`; returns (ok, failed, rejected).
async fn batch<S>(svc: &S, n: u32, job: Job) -> (u32, u32, u32)
where
    S: Service<Job, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    let mut handles = Vec::new();
    for _ in 0..n {
        let mut svc = svc.clone();
        let fut = svc.ready().await.unwrap().call(job);
        handles.push(tokio::spawn(fut));
    }
    let (mut ok, mut failed, mut rejected) = (0, 0, 0);
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if e.is::<Error>() => rejected += 1,
            Err(_) => failed += 1,
        }
    }
    (ok, failed, rejected)
}

fn sleeper() -> impl Service<Job, Response = (), Error = &'static str, Future: Send> + Clone + Send
{
    service_fn(|job: Job| async move {
        sleep(job.delay).await;
        if job.fail {
            Err("boom")
        } else {
            Ok(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn aimd_shrinks_on_failures_and_grows_while_healthy_within_bounds() {
    let layer = ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .initial_limit(8)
            .min_limit(2)
            .max_limit(12)
            .algorithm({
                let mut c = AimdConfig::default();
                c.backoff_ratio = 0.5;
                c
            })
            .build()
            .unwrap(),
    )
    .unwrap();
    let limiter = layer.handle().clone();
    let svc = layer.layer(sleeper());

    assert_eq!(batch(&svc, 8, job(10, true)).await, (0, 8, 0));
    assert_eq!(
        limiter.snapshot().limit,
        2,
        "8 failures halve 8 down to the floor"
    );

    let mut seen = vec![limiter.snapshot().limit];
    for _ in 0..10 {
        let limit = limiter.snapshot().limit;
        let (ok, failed, rejected) = batch(&svc, limit, job(10, false)).await;
        assert_eq!((ok, failed, rejected), (limit, 0, 0));
        seen.push(limiter.snapshot().limit);
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), 12, "{seen:?}");
    assert!(seen.iter().all(|l| (2..=12).contains(l)), "{seen:?}");

    // More than the limit at once: the excess is rejected, the rest succeed.
    assert_eq!(batch(&svc, 15, job(10, false)).await, (12, 0, 3));
    assert_eq!(limiter.snapshot().limit, 12);
    assert_eq!(limiter.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn aimd_treats_slow_calls_as_overload() {
    let layer = ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .initial_limit(10)
            .min_limit(1)
            .max_limit(10)
            .algorithm({
                let mut c = AimdConfig::default();
                c.backoff_ratio = 0.5;
                c.latency_threshold = Some(Duration::from_millis(50));
                c
            })
            .build()
            .unwrap(),
    )
    .unwrap();
    let limiter = layer.handle().clone();
    let svc = layer.layer(sleeper());
    batch(&svc, 1, job(80, false)).await;
    assert_eq!(limiter.snapshot().limit, 5);
    // Calls at the threshold, using the whole limit, are healthy and raise it.
    assert_eq!(batch(&svc, 5, job(50, false)).await, (5, 0, 0));
    assert!(limiter.snapshot().limit > 5, "{:?}", limiter.snapshot());
}

#[tokio::test(start_paused = true)]
async fn gradient_lowers_the_limit_when_latency_rises_and_recovers() {
    let layer = ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .initial_limit(20)
            .min_limit(4)
            .max_limit(50)
            .algorithm(GradientConfig::default())
            .build()
            .unwrap(),
    )
    .unwrap();
    let limiter = layer.handle().clone();
    let svc = layer.layer(sleeper());
    for _ in 0..10 {
        let limit = limiter.snapshot().limit;
        batch(&svc, limit, job(20, false)).await;
    }
    let healthy = limiter.snapshot().limit;
    assert!(
        healthy > 20,
        "steady latency at full use probes upwards: {healthy}"
    );
    for _ in 0..2 {
        let limit = limiter.snapshot().limit;
        batch(&svc, limit, job(200, false)).await;
    }
    let slow = limiter.snapshot().limit;
    assert!(
        slow < healthy / 2,
        "10x latency cuts the limit: {healthy} -> {slow}"
    );
    assert!(slow >= 4);
    for _ in 0..20 {
        let limit = limiter.snapshot().limit;
        batch(&svc, limit, job(20, false)).await;
    }
    let recovered = limiter.snapshot().limit;
    assert!(recovered > slow, "recovers: {slow} -> {recovered}");
    assert!(recovered <= 50);
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_what_a_failure_is() {
    let inner = service_fn(|code: u16| async move { Ok::<u16, &'static str>(code) });
    let layer = ConcurrencyLimitLayer::builder(
        ConcurrencyConfig::builder()
            .initial_limit(10)
            .min_limit(1)
            .max_limit(10)
            .algorithm({
                let mut c = AimdConfig::default();
                c.backoff_ratio = 0.5;
                c
            })
            .build()
            .unwrap(),
    )
    .classify(|r: Result<&u16, &&'static str>| match r {
        Ok(code) if *code >= 500 => Outcome::RETRYABLE,
        Ok(code) if *code == 401 => Outcome::Fatal,
        _ => Outcome::Success,
    })
    .build()
    .unwrap();
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(inner);
    assert_eq!(svc.ready().await.unwrap().call(503).await.unwrap(), 503);
    assert_eq!(
        limiter.snapshot().limit,
        5,
        "an Ok(503) counts as a failure"
    );
    svc.ready().await.unwrap().call(401).await.unwrap();
    assert_eq!(limiter.snapshot().limit, 5, "fatal says nothing about load");
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_to_the_running_limiter() {
    let gate = Gate::default();
    let layer = fixed(4);
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(gate.clone());
    let mut held = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = oneshot::channel();
        let mut f = task::spawn(svc.ready().await.unwrap().call(rx));
        assert_pending!(f.poll());
        held.push((tx, f));
    }

    let bad = {
        let mut c = ConcurrencyConfig::default();
        c.min_limit = 0;
        c
    };
    assert_eq!(limiter.reconfigure(&bad).unwrap_err().field(), "min_limit");
    assert_eq!(limiter.snapshot().limit, 4, "a bad config changes nothing");

    limiter.reconfigure(&ConcurrencyConfig::fixed(1)).unwrap();
    let snap = limiter.snapshot();
    assert_eq!(
        (snap.limit, snap.in_flight),
        (1, 3),
        "holders keep their permits"
    );
    let (_tx, rx) = oneshot::channel();
    let err = svc.ready().await.unwrap().call(rx).await.unwrap_err();
    assert_eq!(
        concurrency_error(&err),
        &Error::ConcurrencyLimited { limit: 1 }
    );

    // Finishing the holders drains in-flight below the new limit.
    for (tx, mut f) in held {
        tx.send(Ok(0)).unwrap();
        assert_ready!(f.poll()).unwrap();
    }
    assert_eq!(limiter.snapshot().in_flight, 0);
    let (tx, rx) = oneshot::channel();
    let mut f = task::spawn(svc.ready().await.unwrap().call(rx));
    assert_pending!(f.poll());
    tx.send(Ok(9)).unwrap();
    assert_eq!(assert_ready!(f.poll()).unwrap(), 9);

    // max_wait can be switched on at run time.
    let mut with_wait = ConcurrencyConfig::fixed(1);
    with_wait.max_wait = Some(Duration::from_millis(5));
    limiter.reconfigure(&with_wait).unwrap();
    assert_eq!(limiter.config(), with_wait);
    assert_eq!(limiter.max_wait(), Some(Duration::from_millis(5)));
}

#[tokio::test(start_paused = true)]
async fn raising_the_limit_wakes_waiters() {
    let (gate, limiter, mut svc) = one_permit_waiting(Duration::from_secs(1));
    let (_tx1, rx1) = oneshot::channel();
    let mut first = task::spawn(svc.ready().await.unwrap().call(rx1));
    assert_pending!(first.poll());
    let (_tx2, rx2) = oneshot::channel();
    let mut second = task::spawn(svc.ready().await.unwrap().call(rx2));
    assert_pending!(second.poll());

    let mut wider = ConcurrencyConfig::fixed(2);
    wider.max_wait = Some(Duration::from_secs(1));
    limiter.reconfigure(&wider).unwrap();
    assert!(second.is_woken());
    assert_pending!(second.poll());
    assert_eq!(gate.active(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Call,
    Finish { index: usize, fail: bool },
    Drop { index: usize },
    SetBounds { min: u32, max: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Call),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(index, fail)| Op::Finish { index, fail }),
        1 => any::<usize>().prop_map(|index| Op::Drop { index }),
        1 => (1u32..6, 0u32..6).prop_map(|(min, span)| Op::SetBounds { min, max: min + span }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over any sequence of calls, completions (ok or failed), drops and limit changes, a
    /// call is admitted exactly when fewer than `limit` are in flight, and the limiter's
    /// in-flight count always equals the calls really running.
    #[test]
    fn never_more_than_the_limit_in_flight(ops in proptest::collection::vec(op(), 1..80)) {
        let gate = Gate::default();
        let layer = ConcurrencyLimitLayer::from_config(&ConcurrencyConfig::builder()
                .initial_limit(3)
                .min_limit(1)
                .max_limit(8)
                .build()
                .unwrap())
            .unwrap();
        let limiter = layer.handle().clone();
        let mut svc = layer.layer(gate.clone());
        let mut held = Vec::new();
        for op in ops {
            match op {
                Op::Call => {
                    let before = limiter.snapshot();
                    let (tx, rx) = oneshot::channel();
                    let mut f = task::spawn(svc.call(rx));
                    match f.poll() {
                        Poll::Pending => {
                            prop_assert!(before.in_flight < before.limit, "{before:?}");
                            held.push((tx, f));
                        }
                        Poll::Ready(Err(e)) => {
                            prop_assert!(e.is::<Error>());
                            prop_assert!(before.in_flight >= before.limit, "{before:?}");
                        }
                        Poll::Ready(Ok(_)) => prop_assert!(false, "finished without a reply"),
                    }
                }
                Op::Finish { index, fail } if !held.is_empty() => {
                    let (tx, mut f) = held.swap_remove(index % held.len());
                    tx.send(if fail { Err("no".into()) } else { Ok(1) }).unwrap();
                    let done = f.poll();
                    prop_assert!(done.is_ready());
                }
                Op::Drop { index } if !held.is_empty() => {
                    drop(held.swap_remove(index % held.len()));
                }
                Op::SetBounds { min, max } => {
                    let config = {
                        let mut c = ConcurrencyConfig::default();
                        c.initial_limit = min;
                        c.min_limit = min;
                        c.max_limit = max;
                        c
                    };
                    limiter.reconfigure(&config).unwrap();
                    let limit = limiter.snapshot().limit;
                    prop_assert!((min..=max).contains(&limit));
                }
                _ => {}
            }
            let snap = limiter.snapshot();
            prop_assert_eq!(snap.in_flight as usize, held.len());
            prop_assert_eq!(gate.active(), held.len());
            prop_assert!((snap.min_limit..=snap.max_limit).contains(&snap.limit));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn metrics_follow_the_limit_in_flight_and_rejections() {
    let capture = tower_prism_testkit::metrics::Capture::default();
    let layer = metrics::with_local_recorder(&capture, || {
        ConcurrencyLimitLayer::builder(
            ConcurrencyConfig::builder()
                .initial_limit(10)
                .min_limit(1)
                .max_limit(10)
                .algorithm({
                    let mut c = AimdConfig::default();
                    c.backoff_ratio = 0.5;
                    c
                })
                .build()
                .unwrap(),
        )
        .name("api")
        .build()
        .unwrap()
    });
    let limit = "prism_ratelimit_concurrency_limit{name=api}";
    let in_flight = "prism_ratelimit_in_flight{name=api}";
    let rejected = "prism_ratelimit_rejected_total{name=api,reason=concurrency}";
    assert_eq!(capture.gauge(limit), 10.0);

    let svc = layer.layer(sleeper());
    let mut one = svc.clone();
    let call = one.ready().await.unwrap().call(job(10, true));
    assert_eq!(capture.gauge(in_flight), 1.0);
    assert!(call.await.is_err());
    assert_eq!(capture.gauge(in_flight), 0.0);
    assert_eq!(capture.gauge(limit), 5.0, "the failure halved the limit");

    assert_eq!(batch(&svc, 7, job(10, false)).await, (5, 0, 2));
    assert_eq!(capture.counter(rejected), 2);
    assert_eq!(
        capture.gauge(limit),
        f64::from(layer.handle().snapshot().limit)
    );
}

/// Real threads hammering one limiter of 3: the inner service never sees more than 3
/// calls at once, and every permit comes back.
#[test]
fn threads_never_exceed_the_limit() {
    #[derive(Clone, Default)]
    struct Counted {
        active: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    }
    impl Service<u32> for Counted {
        type Response = u32;
        type Error = String;
        type Future = Pin<Box<dyn Future<Output = Result<u32, String>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, n: u32) -> Self::Future {
            let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let leave = Leave(self.active.clone());
            Box::pin(async move {
                // Stay in flight for a moment so the calls overlap.
                std::thread::yield_now();
                drop(leave);
                if n.is_multiple_of(7) {
                    Err("seven".into())
                } else {
                    Ok(n)
                }
            })
        }
    }

    let inner = Counted::default();
    let layer = ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .initial_limit(3)
            .min_limit(1)
            .max_limit(3)
            .build()
            .unwrap(),
    )
    .unwrap();
    let limiter = layer.handle().clone();
    let svc = layer.layer(inner.clone());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut svc = svc.clone();
            std::thread::spawn(move || {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                for n in 0..2_000 {
                    assert!(svc.poll_ready(&mut cx).is_ready());
                    let fut = std::pin::pin!(svc.call(n));
                    assert!(fut.poll(&mut cx).is_ready(), "every call ends in one poll");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(inner.peak.load(Ordering::SeqCst) <= 3);
    assert!(inner.peak.load(Ordering::SeqCst) >= 1);
    assert_eq!(inner.active.load(Ordering::SeqCst), 0);
    let snap = limiter.snapshot();
    assert_eq!(snap.in_flight, 0);
    assert!((1..=3).contains(&snap.limit), "{snap:?}");
}
