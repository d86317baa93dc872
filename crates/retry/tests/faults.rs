//! The retry stage when the world misbehaves: an inner service that never answers, answers
//! after an hour, or panics (in `call` or in its future), a classifier that panics, a
//! response future dropped at any poll, and time jumping ahead by days. After each, nothing
//! is wedged: the budget is charged exactly for the retries that were sent, no inner future
//! is left alive, and later calls behave normally. Paused time throughout.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::{advance, Instant};
use tower::{BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::Outcome;
use tower_prism_retry::{Backoff, BudgetConfig, Error, RetryBudget, RetryConfig, RetryLayer};

mod common;

use common::scripted::{Act, Scripted};
use common::{roomy_budget, MS, ROOMY};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn roomy(attempts: u32) -> RetryLayer {
    RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(attempts)
            .backoff(Backoff::fixed(MS * 10))
            .budget(roomy_budget())
            .build()
            .unwrap(),
    )
    .build()
    .unwrap()
}

#[track_caller]
fn assert_budget(budget: &RetryBudget, expected: f64) {
    let available = budget.available();
    assert!(
        (available - expected).abs() < 1e-6,
        "budget {available}, expected {expected}"
    );
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    Pin::new(f).poll(&mut cx)
}

/// After a fault: a call that fails once then answers is retried as usual.
async fn still_works(layer: &RetryLayer) {
    let inner = Scripted::new(&[Act::Fail, Act::Answer]);
    let retries = layer.handle().snapshot().retries;
    assert_eq!(layer.layer(inner.clone()).oneshot(5).await.unwrap(), 5);
    assert_eq!(inner.calls(), 2);
    assert_eq!(layer.handle().snapshot().retries, retries + 1);
    assert_eq!(inner.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_inner_service_that_never_answers_is_bounded_by_attempt_timeout() {
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::fixed(MS * 10))
            .attempt_timeout(Duration::from_secs(1))
            .budget(roomy_budget())
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let inner = Scripted::new(&[Act::Never; 3]);
    let start = Instant::now();
    let err = layer.layer(inner.clone()).oneshot(1).await.unwrap_err();
    let err = err.downcast_ref::<Error>().unwrap();
    assert!(matches!(err, Error::RetriesExhausted { attempts: 3, .. }));
    assert!(err
        .last()
        .unwrap()
        .downcast_ref::<Error>()
        .is_some_and(|e| matches!(e, Error::AttemptTimedOut { .. })));
    assert_eq!(start.elapsed(), Duration::from_secs(3) + MS * 20);
    assert_eq!(inner.alive(), 0, "every abandoned attempt was dropped");
    assert_budget(layer.handle().budget(), ROOMY + 0.5 - 2.0);
}

#[tokio::test(start_paused = true)]
async fn without_attempt_timeout_a_silent_inner_service_is_waited_for_until_dropped() {
    // Documented: `max_elapsed` bounds when retries start, not an attempt in flight; only
    // `attempt_timeout` (or a deadline above the stage) bounds a silent inner service.
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_elapsed(Duration::from_secs(5))
            .budget(roomy_budget())
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let inner = Scripted::new(&[Act::Never]);
    let mut svc = layer.layer(inner.clone());
    svc.ready().await.unwrap();
    let mut call = Box::pin(svc.call(1));
    assert!(poll_once(&mut call).is_pending());
    advance(DAY * 30).await;
    assert!(poll_once(&mut call).is_pending(), "still waiting");
    assert_eq!((inner.calls(), inner.alive()), (1, 1));
    drop(call);
    assert_eq!(inner.alive(), 0);
    let snap = layer.handle().snapshot();
    assert_eq!((snap.retries, snap.gave_up), (0, 0));
    still_works(&layer).await;
}

#[tokio::test(start_paused = true)]
async fn an_answer_after_an_hour_is_cut_by_attempt_timeout_or_waited_for() {
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::fixed(MS * 10))
            .attempt_timeout(Duration::from_secs(1))
            .budget(roomy_budget())
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let inner = Scripted::new(&[Act::AnswerAfter(HOUR); 3]);
    let start = Instant::now();
    let err = layer.layer(inner.clone()).oneshot(1).await.unwrap_err();
    assert_eq!(err.downcast_ref::<Error>().unwrap().attempts(), Some(3));
    assert_eq!(start.elapsed(), Duration::from_secs(3) + MS * 20);
    assert_eq!(inner.alive(), 0);
    assert_budget(layer.handle().budget(), ROOMY + 0.5 - 2.0);

    // without an attempt timeout the answer is simply late
    let layer = roomy(3);
    let inner = Scripted::new(&[Act::AnswerAfter(HOUR)]);
    let start = Instant::now();
    assert_eq!(layer.layer(inner.clone()).oneshot(7).await.unwrap(), 7);
    assert_eq!(start.elapsed(), HOUR);
    assert_eq!((inner.calls(), inner.alive()), (1, 0));
    assert_budget(layer.handle().budget(), ROOMY + 0.5);
    still_works(&layer).await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_inside_the_first_call_leaves_nothing_wedged() {
    let layer = roomy(3);
    let inner = Scripted::new(&[Act::PanicInCall]);
    let mut svc = layer.layer(inner.clone());
    svc.ready().await.unwrap();
    let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| drop(svc.call(1))));
    assert!(panicked.is_err());
    // The first attempt was counted (its deposit) before the inner service was called.
    assert_budget(layer.handle().budget(), ROOMY + 0.5);
    let snap = layer.handle().snapshot();
    assert_eq!((snap.retries, snap.gave_up), (0, 0));
    still_works(&layer).await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_inside_a_retry_call_gives_its_grant_back() {
    let layer = roomy(3);
    let inner = Scripted::new(&[Act::Fail, Act::PanicInCall]);
    let svc = layer.layer(inner.clone());
    let joined = tokio::spawn(svc.oneshot(1)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(inner.calls(), 2);
    assert_eq!(inner.alive(), 0);
    // The retry never reached the inner service: the budget is not charged for it.
    assert_budget(layer.handle().budget(), ROOMY + 0.5);
    assert_eq!(layer.handle().snapshot().retries, 0);
    still_works(&layer).await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_inside_the_inner_future_leaves_nothing_wedged() {
    let layer = roomy(3);
    let inner = Scripted::new(&[Act::PanicInFuture]);
    let joined = tokio::spawn(layer.layer(inner.clone()).oneshot(1)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(inner.alive(), 0);
    assert_budget(layer.handle().budget(), ROOMY + 0.5);

    // in a retry's future: that retry was sent, so it is charged
    let inner = Scripted::new(&[Act::Fail, Act::PanicInFuture]);
    let joined = tokio::spawn(layer.layer(inner.clone()).oneshot(1)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!((inner.calls(), inner.alive()), (2, 0));
    assert_budget(layer.handle().budget(), ROOMY + 1.0 - 1.0);
    assert_eq!(layer.handle().snapshot().retries, 1);
    still_works(&layer).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_leaves_nothing_wedged() {
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::fixed(MS * 10))
            .budget(roomy_budget())
            .build()
            .unwrap(),
    )
    .classify(|r: Result<&u32, &BoxError>| match r {
        Ok(0) => panic!("the classifier panicked"),
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::RETRYABLE,
    })
    .build()
    .unwrap();
    // The classifier panics on the retry's answer, after a granted, sent retry.
    let inner = Scripted::new(&[Act::Fail, Act::Answer]);
    let joined = tokio::spawn(layer.layer(inner.clone()).oneshot(0)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!((inner.calls(), inner.alive()), (2, 0));
    assert_budget(layer.handle().budget(), ROOMY + 0.5 - 1.0);
    // and on the first answer
    let inner = Scripted::new(&[Act::Answer]);
    let joined = tokio::spawn(layer.layer(inner.clone()).oneshot(0)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_budget(layer.handle().budget(), ROOMY + 1.0 - 1.0);
    // later calls are classified as usual
    let inner = Scripted::new(&[Act::Fail, Act::Answer]);
    assert_eq!(layer.layer(inner.clone()).oneshot(3).await.unwrap(), 3);
    assert_eq!(inner.calls(), 2);
    assert_budget(layer.handle().budget(), ROOMY + 1.5 - 2.0);
}

#[tokio::test(start_paused = true)]
async fn a_time_jump_of_days_in_a_backoff_retries_at_once_and_the_window_moves_on() {
    // The default budget: a 10 s window of 1 s slots, a floor of 10 retries a second, half
    // a retry earned per success.
    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .backoff(Backoff::fixed(Duration::from_secs(1)))
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let floor = layer.handle().budget().available();
    // Three days, and 2^20 one-second slots (where a 20-bit slot epoch wrapped and the
    // old slots came back to life).
    for jump in [DAY * 3, Duration::from_secs(1 << 20)] {
        let inner = Scripted::new(&[Act::Fail, Act::Answer]);
        let mut svc = layer.layer(inner.clone());
        svc.ready().await.unwrap();
        let mut call = Box::pin(svc.call(9));
        assert!(poll_once(&mut call).is_pending(), "in the backoff");
        assert_eq!(inner.calls(), 1);
        advance(jump).await;
        match poll_once(&mut call) {
            Poll::Ready(Ok(9)) => {}
            other => panic!("after a jump of {jump:?}: {other:?}"),
        }
        assert_eq!((inner.calls(), inner.alive()), (2, 0));
        // the withdrawal from before the jump has left the window; the success after it
        // earned half a retry
        let available = layer.handle().budget().available();
        assert!(
            (available - floor - 0.5).abs() < 1e-9,
            "{jump:?}: {available}"
        );
        advance(Duration::from_secs(10)).await;
    }
    // and the budget counts again from here
    let inner = Scripted::new(&[Act::Fail, Act::Answer]);
    assert_eq!(layer.layer(inner).oneshot(1).await.unwrap(), 1);
    assert!((layer.handle().budget().available() - (floor + 0.5 - 1.0)).abs() < 1e-9);
}

fn act() -> impl Strategy<Value = Act> {
    let delay = prop_oneof![Just(MS * 10), Just(MS * 100), Just(MS * 300)];
    prop_oneof![
        Just(Act::Fail),
        delay.clone().prop_map(Act::FailAfter),
        delay.prop_map(Act::AnswerAfter),
        Just(Act::Never),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whenever the response future is dropped (before its first poll, in a backoff,
    /// mid-attempt, or after it finished), the budget is charged exactly for the retries
    /// that reached the inner service, the snapshot counts exactly those, and no inner
    /// future is left alive.
    #[test]
    fn dropping_the_future_at_any_poll_charges_only_the_retries_sent(
        script in proptest::collection::vec(act(), 1..6),
        timeout in proptest::option::of(Just(MS * 200)),
        earned in 0u32..5,
        polls in 0usize..12,
        steps in proptest::collection::vec(
            prop_oneof![Just(0u64), Just(10), Just(50), Just(100), Just(250)], 1..6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = BudgetConfig::builder().ratio(0.5).success_ratio(0.0).min_per_second(0).window(DAY).build().unwrap();
            let mut config = RetryConfig::builder().max_attempts(4).backoff(Backoff::fixed(MS * 50)).budget(budget);
            if let Some(t) = timeout {
                config = config.attempt_timeout(t);
            }
            let layer = RetryLayer::builder(config.build().unwrap()).build().unwrap();
            for _ in 0..earned {
                layer.handle().budget().deposit();
            }
            let start = layer.handle().budget().available();
            let inner = Scripted::new(&script);
            let mut svc = layer.layer(inner.clone());
            svc.ready().await.unwrap();
            let mut call = Box::pin(svc.call(1));
            for i in 0..polls {
                if poll_once(&mut call).is_ready() {
                    break;
                }
                advance(MS * steps[i % steps.len()] as u32).await;
            }
            drop(call);
            let sent = inner.calls() - 1;
            let available = layer.handle().budget().available();
            let expected = start + 0.5 - f64::from(sent);
            prop_assert!((available - expected).abs() < 1e-9,
                "budget {} expected {} (sent {})", available, expected, sent);
            prop_assert_eq!(layer.handle().snapshot().retries, u64::from(sent));
            prop_assert_eq!(inner.alive(), 0);
            Ok(())
        })?;
    }
}
