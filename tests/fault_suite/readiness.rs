//! The whole stack over endpoints whose `poll_ready` misbehaves: never ready, failing,
//! panicking, or stalling a retry. Callers give up (drop the call) or see the panic; nothing
//! is held afterwards, a retry's budget grant comes back, and when the endpoints are ready
//! again calls are answered.

use std::time::Duration;

use tower::{BoxError, Service, ServiceExt};

use crate::support::flavor::{Flavor, GenericFlavor, HttpFlavor};
use crate::support::rig::{Rig, Stack};
use crate::support::{poll_once, quiet_scripted_panics, Fault, Readiness, SCRIPTED_PANIC};

/// Endpoints that are never ready: the call waits in `poll_ready` (nothing is taken before
/// `call`) until the caller gives up; then nothing is held.
async fn endpoints_never_ready_hold_nothing<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    let rig = Rig::<F>::new();
    rig.script.set_readiness(Readiness::Never);
    let waited = tokio::time::timeout(Duration::from_secs(60), rig.call()).await;
    assert!(waited.is_err(), "no endpoint is ever ready");
    assert_eq!(rig.script.calls(), 0);
    rig.assert_quiet("after giving up on unready endpoints");
    rig.script.set_readiness(Readiness::Ready);
    rig.assert_healthy(5, "once the endpoints are ready").await;
}

#[tokio::test(start_paused = true)]
async fn generic_endpoints_never_ready_hold_nothing() {
    endpoints_never_ready_hold_nothing::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_endpoints_never_ready_hold_nothing() {
    endpoints_never_ready_hold_nothing::<HttpFlavor>().await;
}

/// A retry that waits for an endpoint to become ready (after its first attempt failed)
/// and is dropped there gives back its concurrency permit, its probe, and the grant the
/// retry budget made for it.
async fn a_retry_stalled_on_readiness_gives_everything_back<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    let rig = Rig::<F>::new();
    let budget = || rig.layer.snapshot().retry.unwrap().budget_available;
    let before = budget();
    rig.script.then([Fault::Fail]);
    let mut call = Box::pin(rig.service.clone().oneshot(F::request()));
    assert!(poll_once(&mut call).is_pending(), "in its backoff");
    rig.script.set_readiness(Readiness::Never);
    tokio::time::advance(Duration::from_millis(50)).await;
    assert!(poll_once(&mut call).is_pending(), "waiting for readiness");
    assert_eq!(rig.script.calls(), 1);
    assert!(budget() < before, "the retry holds a grant");
    assert_eq!(rig.layer.snapshot().concurrency_limit.unwrap().in_flight, 1);
    // (Within the budget's 10 s window, so the grant and the deposit are both still in it.)
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(
        poll_once(&mut call).is_pending(),
        "still waiting seconds later"
    );
    drop(call);
    rig.assert_quiet("after dropping a retry waiting for readiness");
    let first_attempt_deposit = 0.2;
    assert!(
        (budget() - (before + first_attempt_deposit)).abs() < 1e-9,
        "the grant came back: {before} + 0.2 != {}",
        budget()
    );
    assert_eq!(rig.layer.snapshot().retry.unwrap().retries, 0);
    rig.script.set_readiness(Readiness::Ready);
    rig.assert_healthy(5, "once the endpoints are ready").await;
}

#[tokio::test(start_paused = true)]
async fn generic_a_retry_stalled_on_readiness_gives_everything_back() {
    a_retry_stalled_on_readiness_gives_everything_back::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_a_retry_stalled_on_readiness_gives_everything_back() {
    a_retry_stalled_on_readiness_gives_everything_back::<HttpFlavor>().await;
}

/// A panic in the endpoints' `poll_ready` propagates out of the call (from the stack's
/// `poll_ready`); nothing is held, and ready endpoints answer again.
async fn a_panic_in_poll_ready_leaks_nothing<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    quiet_scripted_panics();
    let rig = Rig::<F>::new();
    rig.assert_healthy(2, "warm-up").await;
    rig.script.set_readiness(Readiness::Panic);
    let panic = rig.call().await.expect_err("the panic propagates");
    assert!(panic.contains(SCRIPTED_PANIC), "{panic}");
    rig.script.set_readiness(Readiness::Ready);
    rig.assert_quiet("after a panic in poll_ready");
    rig.assert_healthy(5, "after a panic in poll_ready").await;
}

#[tokio::test(start_paused = true)]
async fn generic_a_panic_in_poll_ready_leaks_nothing() {
    a_panic_in_poll_ready_leaks_nothing::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_a_panic_in_poll_ready_leaks_nothing() {
    a_panic_in_poll_ready_leaks_nothing::<HttpFlavor>().await;
}

/// Endpoints whose `poll_ready` fails for a while (under the balancer's readiness grace,
/// a second): the balancer replaces its clones and keeps waiting (it never fails
/// `poll_ready`). A call waiting through it must go on when the endpoints are ready again,
/// without any other call or change waking it.
async fn a_call_waiting_through_failing_readiness_goes_on<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
    F::Req: Send + 'static,
    F::Res: Send + 'static,
    <Stack<F> as Service<F::Req>>::Future: Send + 'static,
    Stack<F>: Send + 'static,
{
    let rig = Rig::<F>::new();
    rig.script.set_readiness(Readiness::Error);
    let call = tokio::spawn(rig.service.clone().oneshot(F::request()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!call.is_finished());
    rig.script.set_readiness(Readiness::Ready);
    let answer = tokio::time::timeout(Duration::from_secs(60), call).await;
    let answer = answer.expect("the waiting call goes on once the endpoints are ready");
    assert!(F::answered(&answer.unwrap()));
    rig.assert_quiet("after the readiness errors");
    rig.assert_healthy(5, "after the readiness errors").await;
}

#[tokio::test(start_paused = true)]
async fn generic_a_call_waiting_through_failing_readiness_goes_on() {
    a_call_waiting_through_failing_readiness_goes_on::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_a_call_waiting_through_failing_readiness_goes_on() {
    a_call_waiting_through_failing_readiness_goes_on::<HttpFlavor>().await;
}

/// Endpoints whose `poll_ready` fails for good (every connection refused): each attempt
/// fails with `NoHealthyEndpoint` after the balancer's readiness grace, the retries too, and
/// the call ends with a 503's kind, holding nothing. It waited for ever.
async fn endpoints_refusing_for_good_fail_the_call<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    let rig = Rig::<F>::new();
    rig.script.set_readiness(Readiness::Error);
    let answer = tokio::time::timeout(Duration::from_secs(10), rig.call()).await;
    let error = answer
        .expect("the call ends")
        .expect("no panic")
        .expect_err("no endpoint took it");
    let error = tower_prism::Error::from_box(error);
    assert_eq!(
        error.kind(),
        tower_prism::ErrorKind::NoHealthyEndpoint,
        "{error}"
    );
    assert_eq!(rig.script.calls(), 0);
    rig.assert_quiet("after the refused call");
    rig.script.set_readiness(Readiness::Ready);
    rig.assert_healthy(5, "once the endpoints are ready").await;
}

#[tokio::test(start_paused = true)]
async fn generic_endpoints_refusing_for_good_fail_the_call() {
    endpoints_refusing_for_good_fail_the_call::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_endpoints_refusing_for_good_fail_the_call() {
    endpoints_refusing_for_good_fail_the_call::<HttpFlavor>().await;
}
