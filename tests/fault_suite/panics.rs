//! The whole stack (rate limit with a queue -> concurrency limit -> breaker -> retry ->
//! balance over three endpoints), in the `Generic` and `.http()` profiles, when something
//! panics: the inner service inside `call` or inside its future, a user's classifier at any
//! of the stages that classify, a user's balancer key function.
//!
//! What a tower user expects, and what is asserted: the panic propagates out of the
//! response future (tower middleware does not catch panics; the stack does not turn them
//! into errors), and nothing is left behind: no queued request, no concurrency permit or
//! waiter, no half-open probe, no in-flight count on an endpoint, no live inner future, no
//! poisoned lock that changes behaviour. Later healthy calls are answered and a half-open
//! breaker closes again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tower::{BoxError, Service, ServiceExt};
use tower_prism::balance::Strategy;
use tower_prism::breaker::State;
use tower_prism::ReliabilityLayer;
use tower_prism::{Classify, Outcome};

use crate::support::flavor::{Flavor, GenericFlavor, HttpFlavor};
use crate::support::rig::{Rig, Stack};
use crate::support::{
    catching, every_stage, every_stage_policy, quiet_scripted_panics, Fault, Script, Scripted,
    ENDPOINTS, SCRIPTED_PANIC,
};

/// A panic out of `call`: it propagates to the caller, and nothing leaks.
async fn a_panic_in_call_propagates_and_leaks_nothing<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    quiet_scripted_panics();
    let rig = Rig::<F>::new();
    rig.assert_healthy(3, "warm-up").await;

    rig.script.then([Fault::PanicInCall]);
    let panic = rig.call().await.expect_err("the panic propagates");
    assert!(panic.contains(SCRIPTED_PANIC), "{panic}");
    rig.assert_quiet("after a panic in call");

    // A retry whose second attempt panics in call (inside the retry future).
    rig.script.then([Fault::Fail, Fault::PanicInCall]);
    let panic = rig.call().await.expect_err("the panic propagates");
    assert!(panic.contains(SCRIPTED_PANIC), "{panic}");
    rig.assert_quiet("after a panic in a retry's call");

    rig.assert_healthy(10, "after the panics").await;
}

#[tokio::test(start_paused = true)]
async fn generic_a_panic_in_call_propagates_and_leaks_nothing() {
    a_panic_in_call_propagates_and_leaks_nothing::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_a_panic_in_call_propagates_and_leaks_nothing() {
    a_panic_in_call_propagates_and_leaks_nothing::<HttpFlavor>().await;
}

/// A panic out of the inner response future, on a first attempt and on a retry, in a plain
/// call and in a spawned task (whose `JoinError` is a panic).
async fn a_panic_in_the_future_propagates_and_leaks_nothing<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
    F::Req: Send + 'static,
    F::Res: Send + 'static,
    <Stack<F> as Service<F::Req>>::Future: Send + 'static,
    Stack<F>: Send + 'static,
{
    quiet_scripted_panics();
    let rig = Rig::<F>::new();
    rig.assert_healthy(3, "warm-up").await;

    rig.script.then([Fault::PanicInFuture]);
    let panic = rig.call().await.expect_err("the panic propagates");
    assert!(panic.contains(SCRIPTED_PANIC), "{panic}");
    rig.assert_quiet("after a panic in the future");

    rig.script.then([Fault::Fail, Fault::PanicInFuture]);
    let panic = rig.call().await.expect_err("the panic propagates");
    assert!(panic.contains(SCRIPTED_PANIC), "{panic}");
    rig.assert_quiet("after a panic in a retry's future");

    rig.script.then([Fault::PanicInFuture]);
    let task = tokio::spawn(rig.service.clone().oneshot(F::request()));
    let error = task.await.expect_err("the task panicked");
    assert!(error.is_panic(), "{error}");
    rig.assert_quiet("after a panicking task");

    rig.assert_healthy(10, "after the panics").await;
}

#[tokio::test(start_paused = true)]
async fn generic_a_panic_in_the_future_propagates_and_leaks_nothing() {
    a_panic_in_the_future_propagates_and_leaks_nothing::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_a_panic_in_the_future_propagates_and_leaks_nothing() {
    a_panic_in_the_future_propagates_and_leaks_nothing::<HttpFlavor>().await;
}

/// A half-open probe whose inner future panics gives its probe back: the breaker closes
/// on the next healthy calls.
async fn a_probe_whose_future_panics_gives_the_probe_back<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    quiet_scripted_panics();
    let rig = Rig::<F>::new();
    rig.trip_and_wait().await;
    rig.script.then([Fault::PanicInFuture]);
    assert!(rig.call().await.is_err(), "the probe's panic propagates");
    assert_eq!(rig.breaker_state(), State::HalfOpen);
    rig.assert_quiet("after a probe's future panicked");
    rig.assert_healthy(5, "after the panicking probe").await;
}

#[tokio::test(start_paused = true)]
async fn generic_a_probe_whose_future_panics_gives_the_probe_back() {
    a_probe_whose_future_panics_gives_the_probe_back::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_a_probe_whose_future_panics_gives_the_probe_back() {
    a_probe_whose_future_panics_gives_the_probe_back::<HttpFlavor>().await;
}

/// A half-open probe whose `call` panics (below the breaker, while the breaker's permit is
/// out) must give its probe back like a cancelled one.
async fn a_probe_whose_call_panics_gives_the_probe_back<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    quiet_scripted_panics();
    let rig = Rig::<F>::new();
    rig.trip_and_wait().await;
    rig.script.then([Fault::PanicInCall]);
    assert!(rig.call().await.is_err(), "the probe's panic propagates");
    rig.assert_quiet("after a probe's call panicked");
    rig.assert_healthy(5, "after the panicking probe").await;
}

#[tokio::test(start_paused = true)]
async fn generic_a_probe_whose_call_panics_gives_the_probe_back() {
    a_probe_whose_call_panics_gives_the_probe_back::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_a_probe_whose_call_panics_gives_the_probe_back() {
    a_probe_whose_call_panics_gives_the_probe_back::<HttpFlavor>().await;
}

/// A classifier that panics on its `n`-th use after being armed; otherwise `Err` is a
/// retryable failure and `Ok` a success, as the default.
#[derive(Debug, Clone, Default)]
struct PanicOnNth {
    uses: Arc<AtomicU64>,
    nth: Arc<AtomicU64>,
}

impl PanicOnNth {
    /// Panics on the `n`-th classification from now (0: never).
    fn arm(&self, n: u64) {
        self.uses.store(0, Ordering::SeqCst);
        self.nth.store(n, Ordering::SeqCst);
    }

    /// Classifications since the last [`arm`](Self::arm).
    fn uses(&self) -> u64 {
        self.uses.load(Ordering::SeqCst)
    }
}

impl<Res, E> Classify<Res, E> for PanicOnNth {
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        let use_number = self.uses.fetch_add(1, Ordering::SeqCst) + 1;
        if use_number == self.nth.load(Ordering::SeqCst) {
            panic!("{SCRIPTED_PANIC} in the classifier (use {use_number})");
        }
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::RETRYABLE,
        }
    }
}

/// A successful call is classified by the balancer, the retry stage, the breaker and the
/// concurrency limiter, in that order (innermost first). The classifier panics at each of
/// them in turn, while the breaker is half-open (its probe is out) and while it is closed.
async fn a_classifier_panic_at_the_nth_stage(nth: u64, half_open: bool) {
    quiet_scripted_panics();
    let classify = PanicOnNth::default();
    let rig = Rig::<Classified>::with(every_stage(
        ReliabilityLayer::builder().classify(classify.clone()),
    ));
    if half_open {
        rig.trip_and_wait().await;
    }
    classify.arm(0);
    assert!(rig.call().await.unwrap().is_ok());
    assert_eq!(classify.uses(), 4, "one call is classified by four stages");

    classify.arm(nth);
    let panic = rig
        .call()
        .await
        .expect_err("the classifier's panic propagates");
    assert!(panic.contains("in the classifier"), "{panic}");
    let context = format!("classifier panic at use {nth}, half-open: {half_open}");
    rig.assert_quiet(&context);
    classify.arm(0);
    rig.assert_healthy(5, &context).await;
}

#[tokio::test(start_paused = true)]
async fn a_classifier_panic_in_the_balancer_leaks_nothing() {
    a_classifier_panic_at_the_nth_stage(1, false).await;
    a_classifier_panic_at_the_nth_stage(1, true).await;
}

#[tokio::test(start_paused = true)]
async fn a_classifier_panic_in_the_retry_stage_leaks_nothing() {
    a_classifier_panic_at_the_nth_stage(2, false).await;
    a_classifier_panic_at_the_nth_stage(2, true).await;
}

#[tokio::test(start_paused = true)]
async fn a_classifier_panic_in_the_closed_breaker_leaks_nothing() {
    a_classifier_panic_at_the_nth_stage(3, false).await;
}

#[tokio::test(start_paused = true)]
async fn a_classifier_panic_in_the_half_open_breaker_gives_the_probe_back() {
    a_classifier_panic_at_the_nth_stage(3, true).await;
}

#[tokio::test(start_paused = true)]
async fn a_classifier_panic_in_the_concurrency_limiter_leaks_nothing() {
    a_classifier_panic_at_the_nth_stage(4, false).await;
    a_classifier_panic_at_the_nth_stage(4, true).await;
}

/// The `Generic` profile with the panicking classifier.
struct Classified;

impl Flavor for Classified {
    type P = tower_prism::Classified<PanicOnNth>;
    type Req = u32;
    type Res = u32;
    fn builder() -> tower_prism::ReliabilityLayerBuilder<Self::P> {
        ReliabilityLayer::builder().classify(PanicOnNth::default())
    }
    fn request() -> u32 {
        7
    }
    fn answered(result: &Result<u32, BoxError>) -> bool {
        matches!(result, Ok(7))
    }
}

/// A consistent-hash balancer whose key function panics for one request: the panic comes
/// out of `call`, in the closed state and while a half-open probe is out.
async fn a_key_function_panic(half_open: bool) {
    quiet_scripted_panics();
    let layer = every_stage(ReliabilityLayer::builder())
        .name("keyed")
        .build()
        .unwrap();
    let script = Script::new(Fault::Ok);
    let balance = layer
        .balancer::<&'static str, Scripted, u32>()
        .endpoints(ENDPOINTS.map(|key| (key, Scripted::new(&script))))
        .config({
            // the policy's balance table, hashing on the request
            let mut config = every_stage_policy().balance.unwrap();
            config.strategy = Strategy::ConsistentHash;
            config
        })
        .key_fn(|request: &u32| {
            if *request == 13 {
                panic!("{SCRIPTED_PANIC} in the key function");
            }
            u64::from(*request)
        })
        .build()
        .unwrap();
    let handle = balance.handle().clone();
    let service = layer.balanced(balance);
    let call = |request: u32| catching(service.clone().oneshot(request));
    let quiet = |context: &str| {
        crate::support::assert_quiet(&layer.snapshot(), &handle, &script, context);
    };

    if half_open {
        script.reset(Fault::Fail);
        for _ in 0..4 {
            assert!(call(1).await.unwrap().is_err());
        }
        script.reset(Fault::Ok);
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    }
    let panic = call(13)
        .await
        .expect_err("the key function's panic propagates");
    assert!(panic.contains("key function"), "{panic}");
    quiet("after the key function panicked");
    for request in 0..5 {
        assert_eq!(call(request).await.unwrap().unwrap(), request);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let snapshot = layer.snapshot();
    assert_eq!(snapshot.circuit_breaker.unwrap().state, State::Closed);
    quiet("after healthy calls");
}

#[tokio::test(start_paused = true)]
async fn a_key_function_panic_leaks_nothing() {
    a_key_function_panic(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_key_function_panic_during_half_open_gives_the_probe_back() {
    a_key_function_panic(true).await;
}

/// A stack whose concurrency limiter and breaker see a panic from the same call, run many
/// times over: the locks the stages take on their cold paths (breaker transitions, limiter
/// queue, balancer registry) are never poisoned into a different behaviour.
#[tokio::test(start_paused = true)]
async fn repeated_panics_do_not_poison_any_stage() {
    quiet_scripted_panics();
    let rig = Rig::<GenericFlavor>::new();
    for round in 0..20 {
        let fault = if round % 2 == 0 {
            Fault::PanicInFuture
        } else {
            Fault::PanicInCall
        };
        rig.script.then([fault]);
        assert!(rig.call().await.is_err(), "round {round}");
        // Reloads take the stages' config locks after the panics.
        rig.layer.reconfigure(&every_stage_policy()).unwrap();
    }
    rig.assert_quiet("after twenty panics");
    rig.assert_healthy(10, "after twenty panics").await;
}
