//! The rate limiter (with and without a queue) when the upstream never answers, answers
//! after an hour, panics in `call` or in its future, when the user's key, priority or weight
//! function panics, when a waker panics under the queue's lock, when time jumps by days, and
//! when response futures are dropped at any point. Afterwards nothing is wedged: no queue
//! slot is held, the bucket refills to its burst and requests are admitted on schedule.

mod faults_support;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use faults_support::{must_panic, Fault, Upstream, DELIBERATE, HOUR, MS};
use proptest::prelude::*;
use tokio::time::{advance, Instant};
use tower::util::MapRequest;
use tower::BoxError;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::{HealthSignal, Outcome};
use tower_prism_limit::rate::{AdaptiveConfig, RateLimitConfig, RateLimitLayer, RateLimiter};
use tower_prism_limit::Error;

/// A request: its priority (`PANIC` makes the user's functions panic) and what the upstream
/// does with it.
type Req = (u32, Fault);

/// The priority that makes the user's weight function (asked first) panic.
const PANIC: u32 = u32::MAX;
/// The priority that makes the user's priority function (asked only to queue) panic.
const PANIC_IN_PRIORITY: u32 = u32::MAX - 1;

/// 10 a second, a burst of 2, and a queue of 4 waiting up to 500 ms (or no queue).
fn config(queue: bool) -> RateLimitConfig {
    {
        let mut c = RateLimitConfig::new(10, Duration::from_secs(1));
        c.burst = Some(2);
        c.queue_size = if queue { 4 } else { 0 };
        c.max_wait = queue.then_some(500 * MS);
        c
    }
}

fn priority(req: &Req) -> u32 {
    assert!(
        req.0 < PANIC_IN_PRIORITY,
        "{DELIBERATE}: the priority function panicked"
    );
    req.0
}

fn weight(req: &Req) -> u32 {
    assert!(req.0 != PANIC, "{DELIBERATE}: the weight function panicked");
    1
}

fn fault_of(req: Req) -> Fault {
    req.1
}

/// A limiter of `cfg` in front of a misbehaving upstream, ordering waiters by priority.
fn rate_limited(
    cfg: &RateLimitConfig,
) -> (
    RateLimiter,
    Upstream,
    impl Service<Req, Response = Fault, Error = BoxError, Future: Send + 'static> + Clone,
) {
    let upstream = Upstream::new();
    let inner = MapRequest::new(upstream.clone(), fault_of as fn(Req) -> Fault);
    let layer = RateLimitLayer::from_config(cfg)
        .unwrap()
        .priority_fn(priority as fn(&Req) -> u32)
        .weight_fn(weight as fn(&Req) -> u32);
    let limiter = layer.handle().clone();
    (limiter, upstream, layer.layer(inner))
}

async fn call<S>(svc: &mut S, req: Req) -> Result<Fault, BoxError>
where
    S: Service<Req, Response = Fault, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

fn limiter_error(result: Result<Fault, BoxError>) -> Error {
    let err = result.expect_err("expected a rejection");
    err.downcast_ref::<Error>()
        .cloned()
        .unwrap_or_else(|| panic!("not a rate limiter error: {err}"))
}

/// No queue slot held; after a second the bucket is full (exactly the burst); the burst
/// is admitted at once, and the next request waits for the next token (queue) or is told
/// to come back then (no queue).
async fn assert_unwedged<S>(limiter: &RateLimiter, svc: &mut S, queue: bool)
where
    S: Service<Req, Response = Fault, Error = BoxError>,
{
    assert_eq!(limiter.snapshot().queued, 0, "queue: {queue}");
    advance(Duration::from_secs(1)).await;
    assert_eq!(limiter.snapshot().tokens, 2, "queue: {queue}");
    let start = Instant::now();
    for _ in 0..2 {
        assert_eq!(call(svc, (0, Fault::Answer)).await.unwrap(), Fault::Answer);
    }
    let next = call(svc, (0, Fault::Answer)).await;
    if queue {
        assert_eq!(next.unwrap(), Fault::Answer);
        assert_eq!(start.elapsed(), 100 * MS, "served at the next token");
    } else {
        assert_eq!(
            limiter_error(next),
            Error::RateLimited {
                retry_after: 100 * MS
            }
        );
    }
    assert_eq!(limiter.snapshot().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_never_answering_upstream_holds_no_token_and_no_queue_slot() {
    for queue in [false, true] {
        let (limiter, upstream, mut svc) = rate_limited(&config(queue));
        let mut stuck: Vec<_> = (0..2)
            .map(|_| tokio_test::task::spawn(svc.call((0, Fault::Never))))
            .collect();
        if queue {
            // Waits for the next token, then reaches the upstream and hangs there too.
            stuck.push(tokio_test::task::spawn(svc.call((0, Fault::Never))));
        }
        for future in &mut stuck {
            assert!(future.poll().is_pending());
        }
        advance(100 * MS).await;
        for future in &mut stuck {
            assert!(future.poll().is_pending());
        }
        assert_eq!(upstream.calls(), stuck.len(), "queue: {queue}");
        assert_eq!(limiter.snapshot().queued, 0, "admitted: out of the queue");
        // Hung calls hold nothing: the limiter carries on while they hang.
        assert_unwedged(&limiter, &mut svc, queue).await;
        drop(stuck);
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_after_an_hour_holds_no_token_and_no_queue_slot() {
    for queue in [false, true] {
        let (limiter, _, mut svc) = rate_limited(&config(queue));
        let start = Instant::now();
        let n = if queue { 4 } else { 2 };
        let slow: Vec<_> = (0..n)
            .map(|_| tokio::spawn(svc.call((0, Fault::After(HOUR)))))
            .collect();
        for handle in slow {
            assert_eq!(handle.await.unwrap().unwrap(), Fault::After(HOUR));
        }
        // The queued two were admitted at 100 and 200 ms, then took an hour upstream.
        let last = if queue { HOUR + 200 * MS } else { HOUR };
        assert_eq!(start.elapsed(), last, "queue: {queue}");
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_upstreams_call_holds_no_queue_slot() {
    for queue in [false, true] {
        let (limiter, upstream, mut svc) = rate_limited(&config(queue));
        let ready = svc.ready().await.unwrap();
        must_panic(|| ready.call((0, Fault::PanicInCall)));
        assert_eq!(upstream.calls(), 1);
        assert_eq!(
            limiter.snapshot().tokens,
            1,
            "the request reached the upstream"
        );
        if queue {
            call(&mut svc, (0, Fault::Answer)).await.unwrap();
            // Queued, admitted at the next token, then the upstream panics inside the
            // response future; the waiter behind it is served at the token after.
            let start = Instant::now();
            let panics = tokio::spawn(svc.call((0, Fault::PanicInCall)));
            let behind = tokio::spawn(svc.call((0, Fault::Answer)));
            assert!(panics.await.unwrap_err().is_panic());
            assert_eq!(behind.await.unwrap().unwrap(), Fault::Answer);
            assert_eq!(start.elapsed(), 200 * MS);
        }
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_inside_the_upstreams_future_holds_no_queue_slot() {
    for queue in [false, true] {
        let (limiter, _, mut svc) = rate_limited(&config(queue));
        let n = if queue { 4 } else { 2 };
        let panicking: Vec<_> = (0..n)
            .map(|_| tokio::spawn(svc.call((0, Fault::PanicAfter(10 * MS)))))
            .collect();
        for handle in panicking {
            assert!(handle.await.unwrap_err().is_panic());
        }
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
}

/// The user's priority or weight function panicking inside `call` takes no token and no
/// queue slot; nor does a panicking key function.
#[tokio::test(start_paused = true)]
async fn a_panicking_user_function_takes_no_token_and_no_queue_slot() {
    for queue in [false, true] {
        let (limiter, upstream, mut svc) = rate_limited(&config(queue));
        // Empty the bucket, so a queued request would have to wait (the priority function
        // is only asked then).
        call(&mut svc, (0, Fault::Answer)).await.unwrap();
        call(&mut svc, (0, Fault::Answer)).await.unwrap();
        for panics in [PANIC, PANIC_IN_PRIORITY] {
            let ready = svc.ready().await.unwrap();
            if queue || panics == PANIC {
                must_panic(|| ready.call((panics, Fault::Answer)));
            } else {
                // Without a queue the priority is never asked for.
                let refused = ready.call((panics, Fault::Answer)).await;
                assert!(matches!(limiter_error(refused), Error::RateLimited { .. }));
            }
            let snap = limiter.snapshot();
            assert_eq!((snap.queued, snap.tokens), (0, 0));
        }
        assert_eq!(upstream.calls(), 2);
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
    let keyed = RateLimitLayer::from_config(&config(true))
        .unwrap()
        .key_fn(|req: &Req| {
            assert!(req.0 != PANIC, "{DELIBERATE}: the key function panicked");
            req.0
        });
    let mut svc = keyed.layer(MapRequest::new(Upstream::new(), fault_of));
    let ready = svc.ready().await.unwrap();
    must_panic(|| ready.call((PANIC, Fault::Answer)));
    let snap = keyed.handle().snapshot();
    assert_eq!((snap.queued, snap.keys), (0, 0));
    assert_eq!(
        call(&mut svc, (7, Fault::Answer)).await.unwrap(),
        Fault::Answer
    );
}

/// A waker that panics when woken: user code that runs under the queue's lock.
struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("{DELIBERATE}: a waker panicked");
    }
}

/// A waiter's waker panics while the queue's lock is held (it is woken when shed): the
/// lock is poisoned, and that changes nothing: the shed waiter learns it was shed, the
/// queue keeps its order and its count, and requests are served on schedule.
#[tokio::test(start_paused = true)]
async fn a_waker_panicking_under_the_queue_lock_changes_nothing() {
    let cfg = {
        let mut c = config(true);
        c.queue_size = 1;
        c
    };
    let (limiter, _, mut svc) = rate_limited(&cfg);
    call(&mut svc, (0, Fault::Answer)).await.unwrap();
    call(&mut svc, (0, Fault::Answer)).await.unwrap();
    let mut low = Box::pin(svc.call((0, Fault::Answer)));
    let waker = Waker::from(Arc::new(PanickingWaker));
    assert!(low
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    assert_eq!(limiter.snapshot().queued, 1);
    // A more important request sheds `low`, whose waker panics under the lock.
    let ready = svc.ready().await.unwrap();
    must_panic(|| ready.call((9, Fault::Answer)));
    let noop = Waker::noop();
    match low.as_mut().poll(&mut Context::from_waker(noop)) {
        Poll::Ready(result) => assert_eq!(limiter_error(result), Error::Shed),
        Poll::Pending => panic!("the shed waiter must learn it was shed"),
    }
    // The poisoned lock is used as before: a waiter is queued and served at the next token.
    let start = Instant::now();
    assert_eq!(
        call(&mut svc, (0, Fault::Answer)).await.unwrap(),
        Fault::Answer
    );
    assert_eq!(start.elapsed(), 100 * MS);
    assert_unwedged(&limiter, &mut svc, true).await;
}

/// Paused time jumps by 30 days with the bucket empty and a request queued: the bucket
/// holds exactly its burst afterwards (30 days do not bank 30 days of tokens), the waiter
/// is settled at its first poll, and no slot is left.
#[tokio::test(start_paused = true)]
async fn a_time_jump_of_days_banks_no_tokens_and_leaves_no_waiter() {
    const DAYS: Duration = Duration::from_secs(30 * 86_400);
    for queue in [false, true] {
        let (limiter, _, mut svc) = rate_limited(&config(queue));
        call(&mut svc, (0, Fault::Answer)).await.unwrap();
        call(&mut svc, (0, Fault::Answer)).await.unwrap();
        let mut waiting = tokio_test::task::spawn(svc.call((0, Fault::Answer)));
        let settled_at_once = waiting.poll().is_ready();
        assert_eq!(settled_at_once, !queue);
        advance(DAYS).await;
        if queue {
            // Its timer fired at max_wait, but it is polled only now, and its token came
            // (at 100 ms) before its deadline: admitted, and out of the queue.
            assert!(waiting.poll().is_ready(), "settled at its first poll");
        }
        drop(waiting);
        let snap = limiter.snapshot();
        assert_eq!((snap.queued, snap.tokens), (0, if queue { 1 } else { 2 }));
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
}

/// One step of the cancellation property test.
#[derive(Debug, Clone)]
enum Step {
    /// A new request of this priority: answered after this many ms (`None`: never).
    Call(u32, Option<u64>),
    /// Polls request `i` (mod the number of requests).
    Poll(usize),
    /// Drops request `i`, wherever it is: not yet polled, queued, admitted but waiting for
    /// the upstream to be ready, or in the upstream.
    Drop(usize),
    /// Lets this many ms pass.
    Advance(u64),
    /// Makes the upstream ready or not.
    Ready(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u32..3, proptest::option::weighted(0.8, 0u64..50))
            .prop_map(|(p, after)| Step::Call(p, after)),
        3 => any::<usize>().prop_map(Step::Poll),
        2 => any::<usize>().prop_map(Step::Drop),
        2 => (0u64..150).prop_map(Step::Advance),
        1 => any::<bool>().prop_map(Step::Ready),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Response futures dropped at random points leave no queue slot behind; while they
    /// live, the queue never holds more than its capacity and the upstream never sees more
    /// than the rate allows (burst + elapsed / interval); once all are gone the limiter
    /// serves requests on schedule.
    #[test]
    fn dropping_response_futures_anywhere_leaks_no_queue_slot(
        queue in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (limiter, upstream, mut svc) = rate_limited(&config(queue));
            let start = Instant::now();
            let mut requests = Vec::new();
            for step in steps {
                match step {
                    Step::Call(priority, after) => {
                        let fault = after.map_or(Fault::Never, |ms| Fault::After(Duration::from_millis(ms)));
                        requests.push(Some(tokio_test::task::spawn(svc.call((priority, fault)))));
                    }
                    Step::Poll(i) if !requests.is_empty() => {
                        let i = i % requests.len();
                        if let Some(request) = requests[i].as_mut() {
                            if request.poll().is_ready() {
                                requests[i] = None;
                            }
                        }
                    }
                    Step::Drop(i) if !requests.is_empty() => {
                        let i = i % requests.len();
                        requests[i] = None;
                    }
                    Step::Advance(ms) => advance(Duration::from_millis(ms)).await,
                    Step::Ready(ready) => upstream.ready.store(ready, Ordering::SeqCst),
                    _ => {}
                }
                let snap = limiter.snapshot();
                prop_assert!(snap.queued <= snap.queue_capacity, "{snap:?}");
                prop_assert!(snap.queued <= requests.iter().flatten().count(), "{snap:?}");
                let allowed = 2 + start.elapsed().as_millis() / 100;
                prop_assert!(upstream.calls() as u128 <= allowed, "{} calls", upstream.calls());
            }
            drop(requests);
            upstream.ready.store(true, Ordering::SeqCst);
            assert_unwedged(&limiter, &mut svc, queue).await;
            Ok(())
        })?;
    }

    /// Any config, however extreme, is refused with a typed error or builds a limiter that
    /// admits, refuses and queues without panicking, also across jumps of up to a year;
    /// every `retry_after` is within its documented cap.
    #[test]
    fn any_config_builds_a_limiter_that_never_panics(
        rate in prop_oneof![6 => 1u32..1000, 1 => Just(u32::MAX), 1 => any::<u32>()],
        period_nanos in prop_oneof![
            6 => 1_000_000u64..2_000_000_000,
            1 => Just(366 * 86_400 * 1_000_000_000),
            1 => any::<u64>(),
        ],
        burst in proptest::option::of(prop_oneof![6 => 1u32..100, 1 => Just(u32::MAX), 1 => any::<u32>()]),
        queue_size in prop_oneof![2 => Just(0usize), 4 => 1usize..8, 1 => Just(usize::MAX)],
        max_wait_nanos in prop_oneof![
            6 => 1u64..1_000_000_000,
            1 => Just(60_000_000_000),
            1 => any::<u64>(),
        ],
        jumps in proptest::collection::vec(prop_oneof![0u64..1_000, Just(u64::MAX / 1024)], 1..6),
    ) {
        let cfg = {
            let mut c = RateLimitConfig::new(rate, Duration::from_nanos(period_nanos));
            c.burst = burst;
            c.queue_size = queue_size;
            c.max_wait = (queue_size > 0).then(|| Duration::from_nanos(max_wait_nanos));
            c
        };
        if let Err(err) = cfg.validate() {
            prop_assert!(!err.field().is_empty());
            return Ok(());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (limiter, _, mut svc) = rate_limited(&cfg);
            for nanos in jumps {
                // Up to about 200 days of paused time at once (u64::MAX / 1024 ns).
                advance(Duration::from_nanos(nanos)).await;
                let mut pending = Vec::new();
                for priority in 0..3 {
                    let mut request =
                        tokio_test::task::spawn(svc.call((priority, Fault::Answer)));
                    match request.poll() {
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(err)) => {
                            let err = err.downcast_ref::<Error>().expect("a limiter error");
                            if let Some(retry_after) = err.retry_after() {
                                prop_assert!(retry_after <= RateLimitConfig::MAX_RETRY_AFTER);
                            }
                        }
                        Poll::Pending => pending.push(request),
                    }
                }
                let _ = limiter.try_acquire(1);
                let _ = limiter.snapshot();
                drop(pending);
                prop_assert_eq!(limiter.snapshot().queued, 0);
            }
            Ok(())
        })?;
    }

    /// Any adaptive config, however extreme (rates from 10^-12 to 10^300 a second, steps of
    /// 10^300, intervals of centuries), is refused with a typed error or builds a limiter
    /// whose rate stays within its bounds through failures, an open circuit, recoveries and
    /// jumps of days, without panicking; every `retry_after` is within its cap.
    #[test]
    fn any_adaptive_config_keeps_the_rate_in_bounds_and_never_panics(
        rate in prop_oneof![6 => 1u32..1000, 1 => any::<u32>()],
        burst in prop_oneof![6 => 1u32..100, 1 => any::<u32>()],
        min_rate in prop_oneof![6 => 0.1f64..100.0, 1 => Just(1e-12), 1 => any::<f64>()],
        span in prop_oneof![6 => 1.0f64..1000.0, 1 => Just(1e300), 1 => any::<f64>()],
        interval_ms in prop_oneof![6 => 1u64..10_000, 1 => any::<u64>()],
        decrease_factor in prop_oneof![6 => 0.01f64..0.99, 1 => any::<f64>()],
        increase_step in prop_oneof![6 => 0.1f64..1000.0, 1 => Just(1e300), 1 => any::<f64>()],
        min_calls in prop_oneof![6 => 0u64..20, 1 => any::<u64>()],
        rounds in proptest::collection::vec((0u32..30, 0u32..30, any::<bool>(), prop_oneof![0u64..5_000, Just(86_400_000)]), 1..10),
    ) {
        let mut cfg = AdaptiveConfig::new(min_rate, min_rate * span);
        cfg.interval = Duration::from_millis(interval_ms);
        cfg.decrease_factor = decrease_factor;
        cfg.increase_step = increase_step;
        cfg.min_calls = min_calls;
        cfg.latency_threshold = Some(Duration::from_millis(100));
        let (low, high) = (cfg.min_rate, cfg.max_rate);
        let health = HealthSignal::new();
        let config = RateLimitConfig::builder()
            .rate(rate)
            .period(Duration::from_secs(1))
            .burst(burst)
            .adaptive(cfg)
            .build();
        let Ok(config) = config else {
            return Ok(());
        };
        let layer = RateLimitLayer::builder(config)
            .health(health.clone())
            .build()
            .expect("a valid config with a health signal");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let limiter = layer.handle().clone();
            for (successes, failures, open, jump_ms) in rounds {
                for _ in 0..successes {
                    health.record(Outcome::Success, 5 * MS);
                }
                for _ in 0..failures {
                    health.record(Outcome::RETRYABLE, 500 * MS);
                }
                health.set_circuit_open(open);
                advance(Duration::from_millis(jump_ms)).await;
                limiter.adapt();
                if let Err(err) = limiter.try_acquire(1) {
                    if let Some(retry_after) = err.retry_after() {
                        prop_assert!(retry_after <= RateLimitConfig::MAX_RETRY_AFTER);
                    }
                }
                let now = limiter.snapshot().rate_per_second;
                // Within the bounds (the bucket's whole-nanosecond spacing may round a rate
                // by a hair below the floor).
                prop_assert!(now >= low * (1.0 - 1e-9) && now <= high * (1.0 + 1e-9), "{now} outside [{low}, {high}]");
            }
            Ok(())
        })?;
    }
}
