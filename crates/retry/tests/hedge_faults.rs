//! Hedging when the world misbehaves: a hedged call dropped at every poll of its life, a
//! hedge whose `call` or whose future panics while the first attempt is in flight, a
//! classifier or a `clone_request` function that panics on a hedge, a hedge granted while
//! the service is not ready when the first attempt wins. After each, no attempt future is
//! left alive (over a balancer, no endpoint's in-flight count), the budget is charged
//! exactly for the hedges and retries sent, and later hedged calls behave normally. Paused
//! time throughout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::advance;
use tower::{BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::Outcome;
use tower_prism_retry::{Backoff, HedgeConfig, RetryConfig, RetryHandle, RetryLayer};

mod common;

use common::scripted::{Act, Scripted};
use common::{roomy_budget, MS, ROOMY};

/// The hedge delay of every layer here.
const DELAY: Duration = Duration::from_millis(50);

fn config(attempts: u32, max_hedged: u32) -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(attempts)
        .backoff(Backoff::fixed(MS * 10))
        .budget(roomy_budget())
        .hedge(HedgeConfig::fixed(DELAY).max_hedged(max_hedged))
        .build()
        .unwrap()
}

/// Up to `attempts` attempts a call, each hedged up to `max_hedged` times after 50 ms.
fn hedged(attempts: u32, max_hedged: u32) -> RetryLayer {
    RetryLayer::from_config(&config(attempts, max_hedged)).unwrap()
}

/// The budget holds the floor plus half a retry per call, less one per retry or hedge
/// sent: nothing granted and then not sent is kept.
#[track_caller]
fn assert_charged_for_what_was_sent(handle: &RetryHandle, calls: u32) {
    let snap = handle.snapshot();
    let expected = ROOMY + 0.5 * f64::from(calls) - snap.hedges_sent as f64 - snap.retries as f64;
    assert!(
        (snap.budget_available - expected).abs() < 1e-6,
        "budget {}, expected {expected} ({calls} calls, {} hedges, {} retries sent)",
        snap.budget_available,
        snap.hedges_sent,
        snap.retries
    );
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

/// After a fault: a hedged call whose first attempt is slow is answered by its hedge,
/// and the first attempt is cancelled.
async fn still_hedges<C, R, H>(layer: &RetryLayer<C, R, H>)
where
    RetryLayer<C, R, H>: Layer<Scripted>,
    <RetryLayer<C, R, H> as Layer<Scripted>>::Service:
        Service<u32, Response = u32, Error = BoxError>,
{
    let inner = Scripted::then_never(&[Act::Never, Act::AnswerAfter(MS * 10)]);
    let sent = layer.handle().snapshot().hedges_sent;
    assert_eq!(layer.layer(inner.clone()).oneshot(5).await.unwrap(), 5);
    assert_eq!(inner.calls(), 2);
    assert_eq!(inner.alive(), 0, "the slow first attempt was cancelled");
    assert_eq!(layer.handle().snapshot().hedges_sent, sent + 1);
}

/// A hedged call (two hedges, then a retry of the round) dropped after each number of
/// polls, 10 ms apart, from before its first poll to after its answer: every attempt
/// future goes with it, and the budget is charged for the hedges and retries sent only.
#[tokio::test(start_paused = true)]
async fn a_hedged_call_dropped_at_any_poll_leaves_no_attempt_and_no_grant() {
    // The first attempt and its first hedge fail, the second hedge answers late; the
    // call ends once the second hedge answers (at 170 ms: it went at 100 ms).
    let script = [
        Act::FailAfter(MS * 60),
        Act::FailAfter(MS * 30),
        Act::AnswerAfter(MS * 70),
    ];
    let layer = hedged(2, 2);
    let mut calls = 0;
    for polls in 0..25 {
        let inner = Scripted::then_never(&script);
        let mut call = Box::pin(layer.layer(inner.clone()).oneshot(polls));
        // the first poll makes the call, and the call earns its deposit
        calls += u32::from(polls > 0);
        let mut answered = false;
        for _ in 0..polls {
            if let Poll::Ready(result) = poll_once(&mut call) {
                assert_eq!(result.unwrap(), polls);
                answered = true;
                assert_eq!(inner.alive(), 0, "answered: no attempt left in flight");
                break;
            }
            advance(MS * 10).await;
        }
        drop(call);
        assert_eq!(inner.alive(), 0, "dropped after {polls} polls");
        assert_eq!(
            answered,
            polls >= 14,
            "answered at 130 ms, by the 14th poll"
        );
        assert_charged_for_what_was_sent(layer.handle(), calls);
    }
    still_hedges(&layer).await;
}

/// The attempts of a round all fail retryably: the retry after the backoff is hedged in
/// turn; a call dropped in that backoff or in the retry's round leaves nothing.
#[tokio::test(start_paused = true)]
async fn a_hedged_retry_dropped_in_its_backoff_or_round_leaves_nothing() {
    let layer = hedged(2, 1);
    let mut calls = 0;
    // polls 10 ms apart: the round fails at 60 ms (the hedge sent at 50 ms fails then
    // too), the backoff ends and the retry goes at 70 ms (the call's one hedge is spent)
    for polls in [7, 8, 9, 13, 14] {
        let inner = Scripted::then_never(&[
            Act::FailAfter(MS * 60),
            Act::FailAfter(MS * 10),
            Act::Never,
            Act::Never,
        ]);
        let mut call = Box::pin(layer.layer(inner.clone()).oneshot(1));
        calls += 1;
        for _ in 0..polls {
            assert!(poll_once(&mut call).is_pending());
            advance(MS * 10).await;
        }
        drop(call);
        assert_eq!(inner.alive(), 0, "dropped after {polls} polls");
        assert_charged_for_what_was_sent(layer.handle(), calls);
    }
    let snap = layer.handle().snapshot();
    assert_eq!((snap.retries, snap.hedges_sent), (4, 5), "{snap:?}");
    still_hedges(&layer).await;
}

/// A hedge's `call` panics while the first attempt is in flight: the panic propagates, the
/// first attempt is dropped with the call, and the hedge's grant goes back (it was never
/// sent).
#[tokio::test(start_paused = true)]
async fn a_panic_in_a_hedges_call_drops_the_first_attempt_and_gives_the_grant_back() {
    let layer = hedged(1, 1);
    let inner = Scripted::then_never(&[Act::Never, Act::PanicInCall]);
    let joined = tokio::spawn(layer.layer(inner.clone()).oneshot(1)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!((inner.calls(), inner.alive()), (2, 0));
    assert_eq!(layer.handle().snapshot().hedges_sent, 0);
    assert_charged_for_what_was_sent(layer.handle(), 1);
    still_hedges(&layer).await;
    assert_charged_for_what_was_sent(layer.handle(), 2);
}

/// A hedge's future panics while the first attempt is in flight, and the first attempt's
/// while a hedge is: every other attempt is dropped with the call, and the hedge sent is
/// charged.
#[tokio::test(start_paused = true)]
async fn a_panic_in_any_attempts_future_drops_the_others() {
    let layer = hedged(1, 2);
    let scripts: [&[Act]; 2] = [
        // the hedge panics, the first attempt hangs
        &[Act::Never, Act::PanicAfter(MS * 10)],
        // the first attempt panics while both hedges hang
        &[Act::PanicAfter(MS * 120), Act::Never, Act::Never],
    ];
    for (i, script) in scripts.into_iter().enumerate() {
        let inner = Scripted::then_never(script);
        let joined = tokio::spawn(layer.layer(inner.clone()).oneshot(1)).await;
        assert!(joined.unwrap_err().is_panic(), "script {i}");
        assert_eq!(inner.alive(), 0, "script {i}");
        assert_eq!(inner.calls(), script.len() as u32, "script {i}");
        assert_charged_for_what_was_sent(layer.handle(), i as u32 + 1);
    }
    assert_eq!(layer.handle().snapshot().hedges_sent, 3);
    still_hedges(&layer).await;
}

/// The classifier panics on a hedge's answer while the first attempt is in flight: the
/// first attempt goes with the call; later calls are classified as usual.
#[tokio::test(start_paused = true)]
async fn a_classifier_panicking_on_a_hedges_answer_leaves_nothing() {
    let layer = RetryLayer::builder(config(1, 1))
        .classify(|r: Result<&u32, &BoxError>| match r {
            Ok(0) => panic!("the classifier panicked"),
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::RETRYABLE,
        })
        .build()
        .unwrap();
    let inner = Scripted::then_never(&[Act::Never, Act::AnswerAfter(MS * 10)]);
    let joined = tokio::spawn(layer.layer(inner.clone()).oneshot(0)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!((inner.calls(), inner.alive()), (2, 0));
    assert_charged_for_what_was_sent(layer.handle(), 1);
    still_hedges(&layer).await;
    assert_charged_for_what_was_sent(layer.handle(), 2);
}

/// The user's `clone_request` panics on the hedge's copy: the first attempt goes with the
/// call and the hedge's grant comes back.
#[tokio::test(start_paused = true)]
async fn a_clone_request_panicking_on_a_hedge_gives_the_grant_back() {
    let copies = Arc::new(AtomicU32::new(0));
    let counted = copies.clone();
    let layer = RetryLayer::builder(config(1, 1))
        .clone_request(move |n: &u32| {
            // the first copy is the call's template, the second `can_replay`'s check
            // (before the grant), the third the hedge's (after it)
            let copy = counted.fetch_add(1, Ordering::SeqCst);
            assert!(!(*n == 0 && copy == 2), "clone_request panicked");
            Some(*n)
        })
        .build()
        .unwrap();
    let inner = Scripted::then_never(&[Act::Never]);
    let joined = tokio::spawn(layer.layer(inner.clone()).oneshot(0)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!((inner.calls(), inner.alive()), (1, 0));
    assert_eq!(layer.handle().snapshot().hedges_sent, 0);
    assert_charged_for_what_was_sent(layer.handle(), 1);
    still_hedges(&layer).await;
    assert_charged_for_what_was_sent(layer.handle(), 2);
}

/// A hedge granted while the service is not ready for it is not sent when the first
/// attempt answers first: its grant comes back with the answer, not only when the caller
/// drops the future.
#[tokio::test(start_paused = true)]
async fn a_granted_hedge_the_first_answer_makes_moot_gives_its_grant_back() {
    let layer = hedged(1, 1);
    let inner = Scripted::then_never(&[Act::AnswerAfter(MS * 80)]);
    let mut call = Box::pin(layer.layer(inner.clone()).oneshot(7));
    assert!(poll_once(&mut call).is_pending());
    inner.ready.store(false, Ordering::SeqCst);
    advance(DELAY).await;
    assert!(poll_once(&mut call).is_pending());
    let granted = layer.handle().snapshot().budget_available;
    assert!(
        (granted - (ROOMY + 0.5 - 1.0)).abs() < 1e-6,
        "the hedge's grant was taken: {granted}"
    );
    advance(MS * 30).await;
    assert_eq!(poll_once(&mut call).map(Result::unwrap), Poll::Ready(7));
    assert_eq!(layer.handle().snapshot().hedges_sent, 0);
    assert_charged_for_what_was_sent(layer.handle(), 1);
    drop(call);
    assert_charged_for_what_was_sent(layer.handle(), 1);
    assert_eq!(inner.alive(), 0);
}

/// Hedges over a balancer, the call dropped at each poll or answered by one attempt:
/// every endpoint's in-flight count comes back as soon as its attempt is cancelled (when
/// another answers, not when the caller drops the future), and nothing fails.
#[tokio::test(start_paused = true)]
async fn hedges_over_a_balancer_give_every_in_flight_count_back() {
    use tower_prism_balance::{Balance, BalanceConfig, Strategy};
    let in_flight = |balance: &Balance<usize, Scripted, u32>| -> Vec<u64> {
        let snap = balance.handle().snapshot();
        snap.endpoints.iter().map(|e| e.in_flight).collect()
    };
    let layer = hedged(1, 2);
    for polls in 0..14 {
        // Each endpoint's first call: 0 hangs, 1 fails at once, 2 answers after 30 ms;
        // the hedges go to endpoints the call has not tried.
        let endpoints = [
            Scripted::then_never(&[Act::Never]),
            Scripted::then_never(&[Act::FailAfter(MS)]),
            Scripted::then_never(&[Act::AnswerAfter(MS * 30)]),
        ];
        let balance: Balance<usize, Scripted, u32> = Balance::builder()
            .config(
                BalanceConfig::builder()
                    .strategy(Strategy::RoundRobin)
                    .build()
                    .unwrap(),
            )
            .endpoints(endpoints.iter().cloned().enumerate())
            .build()
            .unwrap();
        let mut call = Box::pin(layer.layer(balance.clone()).oneshot(1));
        let mut answered = false;
        for _ in 0..polls {
            if let Poll::Ready(result) = poll_once(&mut call) {
                assert_eq!(result.unwrap(), 1);
                answered = true;
                assert_eq!(in_flight(&balance), [0, 0, 0], "answered after {polls}");
                break;
            }
            advance(MS * 10).await;
        }
        drop(call);
        assert_eq!(
            in_flight(&balance),
            [0, 0, 0],
            "dropped after {polls} polls"
        );
        let alive: i32 = endpoints.iter().map(Scripted::alive).sum();
        assert_eq!(alive, 0, "dropped after {polls} polls");
        assert_eq!(answered, polls >= 10, "answered at 90 ms, by the 10th poll");
    }
}
