//! What the balancer does when endpoints and user callbacks misbehave (an endpoint hangs,
//! answers after an hour, panics in `call`, in its future or when cloned; the classifier or
//! key function panics): nothing may be wedged afterwards (no leaked in-flight count,
//! consistent ejection state, no lock poisoned into different behaviour).
//!
//! A call to an endpoint that never answers waits as long as its caller does: the balancer
//! sets no timeout of its own. What bounds it is the caller's deadline (the facade's
//! `deadline` stage, or any `tower::timeout`), which drops the response future; dropping it
//! releases the call's in-flight count at once. Until then the call counts as in flight, so
//! P2C and least requests steer new calls away from the hung endpoint.
//!
//! Health probes, time jumps, re-added keys and callers that give up are in
//! `faults_health_time.rs`.

mod common;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::Ep;
use tower::{BoxError, Service, ServiceExt};
use tower_prism_balance::{hash_key, Balance, BalanceConfig, Strategy, READINESS_GRACE};
use tower_prism_core::Outcome;

const ANSWER: u8 = 0;
const HANG: u8 = 1;
const PANIC_IN_CALL: u8 = 2;
const PANIC_IN_FUTURE: u8 = 3;
const ANSWER_AFTER_AN_HOUR: u8 = 4;
const PANIC_IN_CLONE: u8 = 5;
/// `poll_ready` fails (a refused connection).
const REFUSE: u8 = 6;
/// `poll_ready` is pending (a connection being made).
const NOT_READY: u8 = 7;

/// An endpoint whose behaviour a test switches: answer its id, hang, panic...
#[derive(Debug)]
struct Faulty {
    id: usize,
    mode: Arc<AtomicU8>,
}

impl Faulty {
    fn new(id: usize) -> (Self, Arc<AtomicU8>) {
        let mode = Arc::new(AtomicU8::new(ANSWER));
        (
            Faulty {
                id,
                mode: mode.clone(),
            },
            mode,
        )
    }
}

impl Clone for Faulty {
    fn clone(&self) -> Self {
        if self.mode.load(Ordering::SeqCst) == PANIC_IN_CLONE {
            panic!("endpoint {} panics when cloned", self.id);
        }
        Faulty {
            id: self.id,
            mode: self.mode.clone(),
        }
    }
}

impl Service<u64> for Faulty {
    type Response = usize;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<usize, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.mode.load(Ordering::SeqCst) {
            REFUSE => Poll::Ready(Err("connection refused".into())),
            NOT_READY => Poll::Pending,
            _ => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, _: u64) -> Self::Future {
        let id = self.id;
        match self.mode.load(Ordering::SeqCst) {
            PANIC_IN_CALL => panic!("endpoint {id} panics in call"),
            HANG => Box::pin(std::future::pending()),
            PANIC_IN_FUTURE => {
                Box::pin(async move { panic!("endpoint {id} panics in its future") })
            }
            ANSWER_AFTER_AN_HOUR => Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(id)
            }),
            _ => Box::pin(async move { Ok(id) }),
        }
    }
}

type F = Balance<usize, Faulty, u64>;

fn faulty(n: usize) -> (Vec<Faulty>, Vec<Arc<AtomicU8>>) {
    (0..n).map(Faulty::new).unzip()
}

fn build(strategy: Strategy, eps: Vec<Faulty>) -> F {
    Balance::builder()
        .config(BalanceConfig::builder().strategy(strategy).build().unwrap())
        .endpoints(eps.into_iter().map(|e| (e.id, e)))
        .build()
        .unwrap()
}

fn in_flight<S>(b: &Balance<usize, S, u64>) -> Vec<u64> {
    b.handle()
        .snapshot()
        .endpoints
        .iter()
        .map(|e| e.in_flight)
        .collect()
}

fn in_flight_c<S, C>(b: &Balance<usize, S, u64, C>) -> Vec<u64> {
    b.handle()
        .snapshot()
        .endpoints
        .iter()
        .map(|e| e.in_flight)
        .collect()
}

async fn send(b: &mut F, req: u64) -> Result<usize, BoxError> {
    b.ready().await?.call(req).await
}

#[tokio::test(start_paused = true)]
async fn a_never_answering_endpoint_is_bounded_by_the_callers_deadline_and_leaks_nothing() {
    let (eps, modes) = faulty(2);
    modes[0].store(HANG, Ordering::SeqCst);
    let mut b = build(Strategy::LeastRequests, eps);
    let mut timed_out = 0;
    for i in 0..20 {
        let call = b.ready().await.unwrap().call(i);
        match tokio::time::timeout(Duration::from_secs(1), call).await {
            Err(_) => timed_out += 1,
            Ok(answer) => assert_eq!(answer.unwrap(), 1),
        }
    }
    assert!(timed_out >= 1, "the hung endpoint took calls");
    assert_eq!(in_flight(&b), [0, 0], "every timed-out call was released");

    // while hung calls are held, least requests sends new calls elsewhere
    let held: Vec<_> = (0..3)
        .map(|i| {
            let mut b = b.clone();
            tokio::spawn(async move { b.ready().await.unwrap().call(i).await })
        })
        .collect();
    tokio::task::yield_now().await;
    let hung_now = in_flight(&b)[0];
    assert_eq!(
        hung_now, 1,
        "one call to the hung endpoint, then it looks busiest"
    );
    for i in 0..10 {
        assert_eq!(send(&mut b, i).await.unwrap(), 1);
    }
    for h in held {
        h.abort();
        let _ = h.await;
    }
    assert_eq!(
        in_flight(&b),
        [0, 0],
        "aborting the callers released their calls"
    );
}

/// Under P2C, one by one: a call to an endpoint that never answers, cut short by its
/// caller's deadline, counts the time it ran as a latency sample (as tower's `PeakEwma`).
/// It recorded nothing, so the hung endpoint kept its first estimate, decaying toward 0,
/// below the working endpoint's real samples: P2C sent it nearly every call.
#[tokio::test(start_paused = true)]
async fn p2c_avoids_an_endpoint_whose_calls_only_time_out() {
    let (eps, modes) = faulty(2);
    modes[1].store(HANG, Ordering::SeqCst);
    let mut b = build(Strategy::P2cPeakEwma, eps);
    let mut timed_out = 0;
    for i in 0..200 {
        let call = b.ready().await.unwrap().call(i);
        if tokio::time::timeout(Duration::from_millis(100), call)
            .await
            .is_err()
        {
            timed_out += 1;
        }
        tokio::time::advance(Duration::from_millis(500)).await;
    }
    let hung = &b.handle().snapshot().endpoints[1];
    assert!(
        timed_out <= 10,
        "{timed_out} of 200 calls went to the hung endpoint: {hung:?}"
    );
    assert!(hung.latency_ewma >= Duration::from_millis(10), "{hung:?}");
    assert_eq!(in_flight(&b), [0, 0]);
}

/// A P2C pick whose endpoints were not ready read the clock for a call not made then; a
/// call made much later through another way of picking (one endpoint left) counted that
/// wait as its latency.
#[tokio::test(start_paused = true)]
async fn a_call_after_a_pending_pick_times_itself_from_its_own_call() {
    let eps = common::eps(2);
    let mut b = common::balance(Strategy::P2cPeakEwma, &eps);
    eps[0].set_ready(false);
    eps[1].set_ready(false);
    assert!(tokio::time::timeout(Duration::from_secs(10), b.ready())
        .await
        .is_err());
    tokio::time::advance(Duration::from_secs(50)).await;
    b.handle().remove(&1);
    eps[0].set_ready(true);
    common::send(&mut b, 0).await.unwrap();
    let ewma = b.handle().snapshot().endpoints[0].latency_ewma;
    assert!(
        ewma < Duration::from_secs(1),
        "an instant call recorded as {ewma:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_after_an_hour_is_counted_and_then_avoided() {
    let (eps, modes) = faulty(3);
    modes[2].store(ANSWER_AFTER_AN_HOUR, Ordering::SeqCst);
    let mut b = build(Strategy::RoundRobin, eps);
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let mut b = b.clone();
            tokio::spawn(async move { b.ready().await.unwrap().call(i).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3601)).await;
    let mut answers: Vec<usize> = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap().unwrap());
    }
    answers.sort();
    assert_eq!(answers, [0, 1, 2]);
    let snap = b.handle().snapshot();
    assert_eq!(in_flight(&b), [0, 0, 0]);
    assert!(
        // (an f32 estimate: 3599.99995904s)
        snap.endpoints[2].latency_ewma >= Duration::from_secs(3599),
        "{snap:?}"
    );
    // P2C now avoids the slow endpoint
    modes[2].store(ANSWER, Ordering::SeqCst);
    b.handle().reconfigure(&BalanceConfig::default()).unwrap();
    let mut to_slow = 0;
    for i in 0..100 {
        to_slow += usize::from(send(&mut b, i).await.unwrap() == 2);
    }
    assert!(
        to_slow < 5,
        "{to_slow} of 100 calls went to the hour-slow endpoint"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_an_endpoints_call_leaks_no_in_flight_count() {
    for strategy in [
        Strategy::P2cPeakEwma,
        Strategy::LeastRequests,
        Strategy::RoundRobin,
    ] {
        let (eps, modes) = faulty(2);
        let mut b = build(strategy, eps);
        modes[0].store(PANIC_IN_CALL, Ordering::SeqCst);
        modes[1].store(PANIC_IN_CALL, Ordering::SeqCst);
        for i in 0..10 {
            b.ready().await.unwrap();
            let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| b.call(i))).is_err();
            assert!(panicked);
        }
        assert_eq!(in_flight(&b), [0, 0], "{strategy:?}");
        modes[0].store(ANSWER, Ordering::SeqCst);
        modes[1].store(ANSWER, Ordering::SeqCst);
        let mut seen = [false; 2];
        for i in 0..20 {
            seen[send(&mut b, i).await.unwrap()] = true;
        }
        assert_eq!(
            seen,
            [true, true],
            "{strategy:?}: both endpoints still serve"
        );
        assert_eq!(in_flight(&b), [0, 0]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_inside_the_response_future_leaks_no_in_flight_count() {
    let (eps, modes) = faulty(2);
    modes[0].store(PANIC_IN_FUTURE, Ordering::SeqCst);
    let mut b = build(Strategy::RoundRobin, eps);
    let mut panics = 0;
    for i in 0..10 {
        let call = b.ready().await.unwrap().call(i);
        match tokio::spawn(call).await {
            Err(e) => {
                assert!(e.is_panic());
                panics += 1;
            }
            Ok(answer) => assert_eq!(answer.unwrap(), 1),
        }
    }
    assert_eq!(panics, 5);
    assert_eq!(in_flight(&b), [0, 0]);
    modes[0].store(ANSWER, Ordering::SeqCst);
    assert_eq!(send(&mut b, 0).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_leaks_nothing_and_the_balancer_goes_on() {
    let explode = Arc::new(AtomicBool::new(true));
    let flag = explode.clone();
    let mut b = Balance::<usize, Ep, u64>::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::LeastRequests)
                .build()
                .unwrap(),
        )
        .classify(move |_: Result<&usize, &std::io::Error>| {
            if flag.load(Ordering::SeqCst) {
                panic!("the classifier panics");
            }
            Outcome::Success
        })
        .endpoints((0..2).map(|i| (i, Ep::new(i))))
        .build()
        .unwrap();
    for i in 0..6 {
        let call = b.ready().await.unwrap().call(i);
        assert!(tokio::spawn(call).await.unwrap_err().is_panic());
    }
    assert_eq!(in_flight_c(&b), [0, 0]);
    explode.store(false, Ordering::SeqCst);
    for i in 0..6 {
        b.ready().await.unwrap().call(i).await.unwrap();
    }
    let snap = b.handle().snapshot();
    assert_eq!(snap.healthy(), 2);
    assert!(snap
        .endpoints
        .iter()
        .all(|e| e.in_flight == 0 && e.failures == 0));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_key_fn_leaks_nothing_and_other_keys_still_route() {
    let mut b = Balance::<usize, Ep, u64>::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::ConsistentHash)
                .build()
                .unwrap(),
        )
        .key_fn(|req: &u64| {
            assert!(*req != 13, "the key function panics on 13");
            hash_key(req)
        })
        .endpoints((0..3).map(|i| (i, Ep::new(i))))
        .build()
        .unwrap();
    let owner = b.ready().await.unwrap().call(7).await.unwrap();
    for _ in 0..5 {
        b.ready().await.unwrap();
        assert!(std::panic::catch_unwind(AssertUnwindSafe(|| b.call(13))).is_err());
    }
    assert_eq!(in_flight(&b), [0, 0, 0]);
    assert_eq!(b.ready().await.unwrap().call(7).await.unwrap(), owner);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_endpoint_clone_poisons_no_lock() {
    let (eps, modes) = faulty(2);
    let mut b = build(Strategy::RoundRobin, eps);
    send(&mut b, 0).await.unwrap();
    // the balancer copies a new endpoint's service on its next poll, with the registry lock
    // held: that copy panics
    let (extra, extra_mode) = Faulty::new(2);
    b.handle().add(2, extra).unwrap();
    extra_mode.store(PANIC_IN_CLONE, Ordering::SeqCst);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(std::panic::catch_unwind(AssertUnwindSafe(|| b.poll_ready(&mut cx))).is_err());
    extra_mode.store(ANSWER, Ordering::SeqCst);
    drop(modes);
    // the lock is poisoned, yet every operation behaves as before
    let handle = b.handle().clone();
    assert_eq!(handle.keys(), [0, 1, 2]);
    let mut seen = [false; 3];
    for i in 0..9 {
        seen[send(&mut b, i).await.unwrap()] = true;
    }
    assert_eq!(seen, [true; 3]);
    assert!(handle.remove(&2));
    handle.reconfigure(&BalanceConfig::default()).unwrap();
    assert_eq!(in_flight(&b), [0, 0]);
}

/// Every endpoint refusing its readiness (each connection refused) for
/// `READINESS_GRACE` fails the call with `NoHealthyEndpoint`: the balancer polled them
/// again every 10 ms for ever, the outlier cap keeping half of them in rotation. One merely
/// not ready keeps the caller waiting, as tower's balancers do.
#[tokio::test(start_paused = true)]
async fn every_endpoint_refusing_fails_the_call_rather_than_hang() {
    let (eps, modes) = faulty(3);
    let mut b = build(Strategy::P2cPeakEwma, eps);
    for mode in &modes {
        mode.store(REFUSE, Ordering::SeqCst);
    }
    for i in 0..5 {
        let start = tokio::time::Instant::now();
        let error = send(&mut b, i).await.unwrap_err();
        assert!(start.elapsed() <= READINESS_GRACE + Duration::from_millis(20));
        assert!(
            matches!(
                error.downcast_ref::<tower_prism_balance::Error>(),
                Some(tower_prism_balance::Error::NoHealthyEndpoint { endpoints: 3 })
            ),
            "{error}"
        );
    }
    assert_eq!(in_flight(&b), [0, 0, 0]);

    let (eps, modes) = faulty(3);
    let mut b = build(Strategy::P2cPeakEwma, eps);
    for (mode, act) in modes.iter().zip([REFUSE, REFUSE, NOT_READY]) {
        mode.store(act, Ordering::SeqCst);
    }
    let mut waiting = tokio_test::task::spawn(b.ready());
    assert!(waiting.poll().is_pending(), "one endpoint may yet be ready");
    drop(waiting);
    modes[2].store(ANSWER, Ordering::SeqCst);
    assert_eq!(send(&mut b, 9).await.unwrap(), 2);
}
