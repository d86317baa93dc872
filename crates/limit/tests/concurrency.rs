//! The concurrency limit as a service, with paused time: fail-fast and waiting admission,
//! permits released on completion and on drop, a proptest that in-flight never passes the
//! limit, and real threads. How the limit moves (adaptive, reconfigured) is in
//! `concurrency_adaptive.rs`.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::concurrency::{concurrency_error, fixed, one_permit_waiting, Gate, Leave};
use proptest::prelude::*;
use tokio::sync::oneshot;
use tokio::time::sleep;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_limit::concurrency::{ConcurrencyConfig, ConcurrencyLimit, ConcurrencyLimitLayer};
use tower_prism_limit::Error;

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

/// With `max_waiters`, a call arriving while that many wait is refused at once with
/// `ConcurrencyLimited`, the waiters counted from their calls (before their futures are
/// polled), and a reload moves the cap. Every call over the limit waited: a flood of
/// callers queued without bound, each holding its request and a timer for `max_wait`.
#[tokio::test(start_paused = true)]
async fn calls_beyond_max_waiters_are_refused_at_once() {
    let config: ConcurrencyConfig = toml::from_str(
        "initial_limit = 1\nmin_limit = 1\nmax_limit = 1\nmax_wait = \"1s\"\nmax_waiters = 2",
    )
    .unwrap();
    assert_eq!(
        config,
        ConcurrencyConfig::builder()
            .initial_limit(1)
            .min_limit(1)
            .max_limit(1)
            .max_wait(Duration::from_secs(1))
            .max_waiters(2)
            .build()
            .unwrap()
    );
    let gate = Gate::default();
    let layer = ConcurrencyLimitLayer::from_config(&config).unwrap();
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(gate.clone());
    let call = |svc: &mut ConcurrencyLimit<Gate, _>| {
        let (tx, rx) = oneshot::channel();
        (tx, task::spawn(svc.call(rx)))
    };

    let (tx1, mut first) = call(svc.ready().await.unwrap());
    assert_pending!(first.poll());
    let (_tx2, mut second) = call(svc.ready().await.unwrap());
    let (_tx3, mut third) = call(svc.ready().await.unwrap());
    assert_eq!(limiter.snapshot().waiting, 2, "waiting from their calls");
    let (_tx4, mut fourth) = call(svc.ready().await.unwrap());
    let err = assert_ready!(fourth.poll()).unwrap_err();
    assert_eq!(
        concurrency_error(&err),
        &Error::ConcurrencyLimited { limit: 1 }
    );
    assert_pending!(second.poll());
    assert_pending!(third.poll());

    // A waiter leaving frees its place.
    drop(third);
    assert_eq!(limiter.snapshot().waiting, 1);
    let (_tx5, mut fifth) = call(svc.ready().await.unwrap());
    assert_pending!(fifth.poll());
    // A reload lowering the cap keeps both waiting and refuses the next.
    let one = config.to_builder().max_waiters(1).build().unwrap();
    limiter.reconfigure(&one).unwrap();
    let (_tx6, mut sixth) = call(svc.ready().await.unwrap());
    assert!(assert_ready!(sixth.poll()).is_err());
    assert_eq!(limiter.snapshot().waiting, 2);

    tx1.send(Ok(1)).unwrap();
    assert_eq!(assert_ready!(first.poll()).unwrap(), 1);
    assert_pending!(second.poll());
    assert_pending!(fifth.poll());
    assert_eq!(gate.active(), 1, "one waiter took the freed permit");
    assert_eq!(limiter.snapshot().waiting, 1);

    // Without the cap, any number waits.
    let mut unbounded = config.clone();
    unbounded.max_waiters = None;
    limiter.reconfigure(&unbounded).unwrap();
    let mut waiting = Vec::new();
    for _ in 0..10 {
        waiting.push(call(svc.ready().await.unwrap()));
    }
    assert_eq!(limiter.snapshot().waiting, 11);
    drop(waiting);
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

/// A call admitted after waiting for a permit is timed from the poll that calls the
/// service, not from the end of it: a service answering in that same poll (a handler with
/// no `.await`, a cache) was timed at 0 however long it took, so AIMD's latency threshold
/// never saw it slow (and raised the limit). Real time: a paused clock does not move
/// within one poll.
#[tokio::test]
async fn a_call_that_waited_is_timed_from_the_poll_that_makes_it() {
    use tower_prism_limit::concurrency::AimdConfig;

    let mut aimd = AimdConfig::default();
    aimd.backoff_ratio = 0.5;
    aimd.latency_threshold = Some(Duration::from_millis(10));
    let config = ConcurrencyConfig::builder()
        .initial_limit(1)
        .min_limit(1)
        .max_limit(10)
        .max_wait(Duration::from_secs(1))
        .algorithm(aimd)
        .build()
        .unwrap();
    let layer = ConcurrencyLimitLayer::from_config(&config).unwrap();
    let limiter = layer.handle().clone();
    // `Some(rx)`: hold the permit until told; `None`: 50 ms of work in the first poll
    let mut svc = layer.layer(tower::service_fn(
        |hold: Option<oneshot::Receiver<()>>| async {
            match hold {
                Some(rx) => drop(rx.await),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
            Ok::<_, std::convert::Infallible>(())
        },
    ));
    let (release, held) = oneshot::channel();
    let holder = tokio::spawn(svc.ready().await.unwrap().call(Some(held)));
    tokio::task::yield_now().await;
    let waiter = tokio::spawn(svc.ready().await.unwrap().call(None));
    tokio::task::yield_now().await;
    assert_eq!(limiter.snapshot().waiting, 1);
    release.send(()).unwrap();
    holder.await.unwrap().unwrap();
    waiter.await.unwrap().unwrap();
    // the holder, fast: 1 -> 2; the waiter, 50 ms over a 10 ms threshold: 2 -> 1
    assert_eq!(limiter.snapshot().limit, 1);
}
