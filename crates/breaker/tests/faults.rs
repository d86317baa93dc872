//! The breaker under faults of the inner service and of the user's classifier: calls that
//! never answer, answer after an hour, panic in `call` or in their future; a classifier
//! that panics; time jumping by days; maximal config values. In every case no half-open
//! probe slot is lost (the breaker is never stuck half-open) and it still opens and closes.

use std::future::{pending, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{advance, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_prism_breaker::{
    Breaker, BreakerConfig, CircuitBreakerLayer, Error, State, Window, MAX_BACKOFF_MULTIPLIER,
    MAX_BREAKER_DURATION,
};
use tower_prism_core::Outcome;

const WAIT: Duration = Duration::from_secs(10);

/// What the test upstream does with a request.
#[derive(Debug, Clone, Copy)]
enum Act {
    Ok,
    Fail,
    /// Never answers.
    Hang,
    /// Answers after this long.
    After(Duration),
    /// Panics inside `call`, before a future exists.
    PanicInCall,
    /// Returns a future that panics when polled.
    PanicInFuture,
}

#[derive(Clone)]
struct Upstream;

type Answer = Pin<Box<dyn Future<Output = Result<Act, &'static str>> + Send>>;

impl Service<Act> for Upstream {
    type Response = Act;
    type Error = &'static str;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, act: Act) -> Answer {
        match act {
            Act::PanicInCall => panic!("upstream panicked in call"),
            Act::Ok => Box::pin(async { Ok(Act::Ok) }),
            Act::Fail => Box::pin(async { Err("upstream failed") }),
            Act::Hang => Box::pin(pending()),
            Act::After(d) => Box::pin(async move {
                tokio::time::sleep(d).await;
                Ok(act)
            }),
            Act::PanicInFuture => Box::pin(async { panic!("upstream panicked in its future") }),
        }
    }
}

fn config(probes: u32) -> BreakerConfig {
    BreakerConfig::builder()
        .window(Window::Count { size: 4 })
        .minimum_calls(4)
        .wait_duration(WAIT)
        .slow_call_duration(Duration::from_secs(60))
        .slow_call_rate_threshold(1.0)
        .permitted_calls_in_half_open(probes)
        .build()
        .unwrap()
}

/// The breaker's service over [`Upstream`], classifying `Err` as a failure.
fn service(
    config: BreakerConfig,
) -> (
    impl Service<Act, Response = Act, Error = tower::BoxError, Future: Send> + Clone,
    Breaker,
) {
    let layer = CircuitBreakerLayer::builder(config)
        .classify(|r: Result<&Act, &&str>| match r {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::RETRYABLE,
        })
        .build()
        .unwrap();
    let breaker = layer.handle().clone();
    (layer.layer(Upstream), breaker)
}

async fn open_it(svc: &mut (impl Service<Act, Error = tower::BoxError> + Clone), b: &Breaker) {
    for _ in 0..4 {
        let _ = svc.ready().await.unwrap().call(Act::Fail).await;
    }
    assert_eq!(b.state(), State::Open);
}

/// With every one of the `probes` half-open slots free, that many successful probes pass
/// and close the breaker (a leaked slot would leave it half-open, rejecting).
async fn probes_all_free_then_close(
    svc: &mut (impl Service<Act, Error = tower::BoxError> + Clone),
    b: &Breaker,
    probes: u32,
) {
    assert_eq!(b.snapshot().probes_admitted, 0, "{:?}", b.snapshot());
    for _ in 0..probes {
        svc.ready().await.unwrap().call(Act::Ok).await.unwrap();
    }
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_answers_gives_its_slot_back_when_dropped() {
    let (mut svc, b) = service(config(2));
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    // two probes that hang take both slots: a third call is rejected
    let mut hung: Vec<_> = (0..2)
        .map(|_| tokio_test::task::spawn(svc.clone().oneshot(Act::Hang)))
        .collect();
    for f in &mut hung {
        assert!(f.poll().is_pending());
    }
    assert_eq!(b.state(), State::HalfOpen);
    let err = svc.ready().await.unwrap().call(Act::Ok).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Error>(),
        Some(&Error::CircuitOpen { retry_after: WAIT })
    );
    // the caller gives up (a timeout above us): both slots come back
    drop(hung);
    assert_eq!(b.snapshot().probes_admitted, 0);
    probes_all_free_then_close(&mut svc, &b, 2).await;
}

#[tokio::test(start_paused = true)]
async fn probes_that_outlast_max_wait_in_half_open_open_the_circuit_again() {
    let (mut svc, b) = service(config(2));
    // Set by a reload of the running breaker, as a config file would.
    let max = Duration::from_secs(30);
    b.reconfigure(
        &config(2)
            .to_builder()
            .max_wait_in_half_open(max)
            .build()
            .unwrap(),
    )
    .unwrap();
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    let mut hung: Vec<_> = (0..2)
        .map(|_| tokio_test::task::spawn(svc.clone().oneshot(Act::Hang)))
        .collect();
    for f in &mut hung {
        assert!(f.poll().is_pending());
    }
    advance(max - Duration::from_millis(1)).await;
    assert!(svc.ready().await.unwrap().call(Act::Ok).await.is_err());
    assert_eq!(b.state(), State::HalfOpen, "still within the wait");

    advance(Duration::from_millis(1)).await;
    let err = svc.ready().await.unwrap().call(Act::Ok).await.unwrap_err();
    assert_eq!(b.state(), State::Open, "the round timed out: open again");
    assert_eq!(
        err.downcast_ref::<Error>(),
        Some(&Error::CircuitOpen { retry_after: WAIT })
    );
    // The next round starts with every slot free; the late probes of the old round, when
    // their callers give up, take nothing from it.
    advance(WAIT).await;
    drop(hung);
    probes_all_free_then_close(&mut svc, &b, 2).await;
}

#[tokio::test(start_paused = true)]
async fn a_round_outlasting_max_wait_in_half_open_reads_as_open_without_a_call() {
    // resilience4j switches on a timer, slots free or not: here one of two probes hangs,
    // no other call comes, and a read of the state after the wait finds the circuit open
    let max = Duration::from_secs(30);
    let config = config(2).to_builder().max_wait_in_half_open(max).build();
    let (mut svc, b) = service(config.unwrap());
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    let mut hung = tokio_test::task::spawn(svc.clone().oneshot(Act::Hang));
    assert!(hung.poll().is_pending());
    assert_eq!(b.state(), State::HalfOpen);
    advance(max).await;
    assert_eq!(b.state(), State::Open);
    drop(hung);
    // with a slot still free, a call after the wait opens it too (it is rejected)
    advance(WAIT * 2).await;
    let mut hung = tokio_test::task::spawn(svc.clone().oneshot(Act::Hang));
    assert!(hung.poll().is_pending());
    advance(max).await;
    assert!(svc.ready().await.unwrap().call(Act::Ok).await.is_err());
    assert_eq!(b.snapshot().state, State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_probe_answering_after_max_wait_in_half_open_cannot_close_the_circuit() {
    // resilience4j opens on a timer at the wait: a probe's late success is recorded in the
    // open state and changes nothing, whether or not anything read the state meanwhile
    let max = Duration::from_secs(1);
    let config = config(1).to_builder().max_wait_in_half_open(max).build();
    let (mut svc, b) = service(config.unwrap());
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    let late = svc.ready().await.unwrap().call(Act::After(max * 5)).await;
    assert!(late.is_ok(), "the probe's own answer is the caller's");
    assert_eq!(
        b.state(),
        State::Open,
        "its verdict came after the round's end"
    );
}

#[tokio::test(start_paused = true)]
async fn without_max_wait_in_half_open_hung_probes_hold_the_round_open() {
    let (mut svc, b) = service(config(1));
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    let mut hung = tokio_test::task::spawn(svc.clone().oneshot(Act::Hang));
    assert!(hung.poll().is_pending());
    advance(Duration::from_secs(24 * 3600)).await;
    assert!(svc.ready().await.unwrap().call(Act::Ok).await.is_err());
    assert_eq!(
        b.state(),
        State::HalfOpen,
        "resilience4j's default: wait for the probe"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_answering_after_an_hour_is_slow_and_holds_its_probe_until_then() {
    let (mut svc, b) = service(config(1));
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    let hour = Duration::from_secs(3600);
    let slow = tokio::spawn(svc.clone().oneshot(Act::After(hour)));
    tokio::task::yield_now().await;
    assert_eq!(b.snapshot().probes_admitted, 1);
    // while it runs, other calls are rejected, and the hint never goes negative or huge
    let err = svc.ready().await.unwrap().call(Act::Ok).await.unwrap_err();
    assert!(err.downcast_ref::<Error>().is_some());
    advance(hour).await;
    slow.await.unwrap().unwrap();
    // one probe, slow (an hour > 60 s) with a slow-call threshold of 1: reopened
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.snapshot().retry_after, Some(WAIT));
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_inner_call_gives_the_probe_back() {
    let (mut svc, b) = service(config(1));
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    let ready = svc.ready().await.unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| drop(ready.call(Act::PanicInCall))));
    assert!(panicked.is_err());
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.snapshot().probes_admitted, 0, "the probe slot leaked");
    probes_all_free_then_close(&mut svc, &b, 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_inner_future_gives_the_probe_back() {
    let (mut svc, b) = service(config(1));
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    // PanicInFuture's future panics before the classifier sees anything
    let task = tokio::spawn(svc.clone().oneshot(Act::PanicInFuture));
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.snapshot().probes_admitted, 0, "the probe slot leaked");
    probes_all_free_then_close(&mut svc, &b, 1).await;
}

/// An upstream whose answer makes the classifier panic.
#[derive(Clone)]
struct AnswersPanicInFuture;

impl Service<()> for AnswersPanicInFuture {
    type Response = Act;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Act, &'static str>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: ()) -> Self::Future {
        std::future::ready(Ok(Act::PanicInFuture))
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_gives_the_probe_back() {
    let (mut svc, b) = service(config(1));
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    let layer =
        CircuitBreakerLayer::from_handle(b.clone()).classify(|r: Result<&Act, &&str>| match r {
            Ok(Act::PanicInFuture) => panic!("classifier panicked"),
            _ => Outcome::Success,
        });
    let panicky = layer.layer(AnswersPanicInFuture);
    let task = tokio::spawn(panicky.oneshot(()));
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.snapshot().probes_admitted, 0, "the probe slot leaked");
    probes_all_free_then_close(&mut svc, &b, 1).await;
    // and it still opens
    open_it(&mut svc, &b).await;
}

#[tokio::test(start_paused = true)]
async fn days_of_paused_time_move_the_open_wait_and_the_time_window() {
    let config = BreakerConfig::builder()
        .window(Window::Time {
            duration: Duration::from_secs(60),
            buckets: 6,
        })
        .minimum_calls(4)
        .wait_duration(WAIT)
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    let (mut svc, b) = service(config);
    for _ in 0..3 {
        let _ = svc.ready().await.unwrap().call(Act::Fail).await;
    }
    assert_eq!(b.snapshot().calls, 3);
    // 30 days later the three failures are long gone from the minute-long window
    advance(Duration::from_secs(30 * 86_400)).await;
    assert_eq!(b.snapshot().calls, 0);
    let _ = svc.ready().await.unwrap().call(Act::Fail).await;
    assert_eq!((b.state(), b.snapshot().calls), (State::Closed, 1));
    for _ in 0..3 {
        let _ = svc.ready().await.unwrap().call(Act::Fail).await;
    }
    assert_eq!(b.state(), State::Open);
    // a week passes while open: the next call is a probe, which closes it
    advance(Duration::from_secs(7 * 86_400)).await;
    svc.ready().await.unwrap().call(Act::Ok).await.unwrap();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn maximal_waits_and_multiplier_never_overflow() {
    let config = BreakerConfig::builder()
        .window(Window::Count { size: 1 })
        .minimum_calls(1)
        .wait_duration(MAX_BREAKER_DURATION)
        .exponential_backoff(MAX_BACKOFF_MULTIPLIER, MAX_BREAKER_DURATION)
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    let (mut svc, b) = service(config);
    let t0 = Instant::now();
    // open, wait the whole (maximal) wait out, fail the probe: the wait would grow a
    // hundredfold each round, but stays at the cap
    for round in 0..40 {
        let _ = svc.ready().await.unwrap().call(Act::Fail).await;
        assert_eq!(b.state(), State::Open, "round {round}");
        let left = b.snapshot().retry_after.unwrap();
        assert_eq!(left, MAX_BREAKER_DURATION, "round {round}");
        advance(left).await;
    }
    assert!(Instant::now() - t0 >= MAX_BREAKER_DURATION * 40);
    svc.ready().await.unwrap().call(Act::Ok).await.unwrap();
    assert_eq!(b.state(), State::Closed);
}

/// A tracing subscriber that panics on every warning (the breaker warns when it opens,
/// while it holds its transition lock).
struct PanicOnWarn;

impl tracing::Subscriber for PanicOnWarn {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            panic!("the subscriber panicked");
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(start_paused = true)]
async fn a_panic_under_the_transition_lock_changes_nothing_after_it() {
    let health = tower_prism_core::HealthSignal::new();
    let layer = CircuitBreakerLayer::builder(config(1))
        .health(health.clone())
        .build()
        .unwrap();
    let b = layer.handle().clone();
    for _ in 0..3 {
        let p = b.acquire().unwrap();
        b.record(p, Outcome::RETRYABLE);
    }
    // the fourth failure opens the breaker; the log event panics while the transition
    // lock is held, which poisons it
    let last = b.acquire().unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        tracing::subscriber::with_default(PanicOnWarn, || b.record(last, Outcome::RETRYABLE))
    }));
    assert!(panicked.is_err());
    // the transition happened whole, and the health signal says so
    assert_eq!(b.state(), State::Open);
    assert!(health.is_circuit_open());
    assert_eq!(b.acquire(), Err(WAIT));
    // every path through the poisoned lock works as before
    b.reconfigure(&b.config()).unwrap();
    advance(WAIT).await;
    let probe = b.acquire().unwrap();
    assert_eq!(b.state(), State::HalfOpen);
    b.record(probe, Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    assert!(!health.is_circuit_open());
    for _ in 0..4 {
        let p = b.acquire().unwrap();
        b.record(p, Outcome::RETRYABLE);
    }
    assert_eq!(b.state(), State::Open);
    b.reset();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_reload_lowering_the_probes_to_those_finished_decides_the_round() {
    let (mut svc, b) = service(config(3));
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    for _ in 0..2 {
        svc.ready().await.unwrap().call(Act::Ok).await.unwrap();
    }
    assert_eq!(b.state(), State::HalfOpen);
    // two probes finished, none in flight: the round can no longer be decided by a probe
    b.reconfigure(&config(2)).unwrap();
    svc.ready().await.unwrap().call(Act::Ok).await.unwrap();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_probe_dropped_after_a_reload_lowered_the_probes_does_not_wedge_the_breaker() {
    let (mut svc, b) = service(config(3));
    open_it(&mut svc, &b).await;
    advance(WAIT).await;
    for _ in 0..2 {
        svc.ready().await.unwrap().call(Act::Ok).await.unwrap();
    }
    let mut hung = tokio_test::task::spawn(svc.clone().oneshot(Act::Hang));
    assert!(hung.poll().is_pending());
    b.reconfigure(&config(2)).unwrap();
    drop(hung);
    svc.ready().await.unwrap().call(Act::Ok).await.unwrap();
    assert_eq!(b.state(), State::Closed);
}
