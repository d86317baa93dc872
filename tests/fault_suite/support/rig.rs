//! [`Rig`]: one whole stack (every stage) over three scripted endpoints, with the handles
//! the fault scenarios drive and inspect.

use std::sync::Arc;
use std::time::Duration;

use tower::{BoxError, Service, ServiceExt};
use tower_prism::balance::BalanceHandle;
use tower_prism::breaker::State;
use tower_prism::{ReliabilityLayer, ReliabilityLayerBuilder};

use super::flavor::Flavor;
use super::{assert_quiet, catching, every_stage, stack_over, Direct, Fault, Script, Scripted};

/// The stack's service for a flavor.
pub type Stack<F> = Direct<<F as Flavor>::Req, <F as Flavor>::P>;

/// The whole stack of flavor `F` over three endpoints sharing one [`Script`].
pub struct Rig<F: Flavor> {
    /// The layer (snapshots, reloads).
    pub layer: ReliabilityLayer<F::P>,
    /// The stacked service.
    pub service: Stack<F>,
    /// The balancer's handle (per-endpoint snapshots).
    pub handle: BalanceHandle<&'static str, Scripted>,
    /// What the endpoints do.
    pub script: Arc<Script>,
}

impl<F> Rig<F>
where
    F: Flavor,
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    /// Every stage, healthy endpoints.
    pub fn new() -> Self {
        Self::with(every_stage(F::builder()))
    }

    /// The stages `builder` sets, healthy endpoints.
    pub fn with(builder: ReliabilityLayerBuilder<F::P>) -> Self {
        let layer = builder.name("faults").build().unwrap();
        let script = Script::new(Fault::Ok);
        let (service, handle) = stack_over::<F::P, F::Req>(&layer, &script);
        Rig {
            layer,
            service,
            handle,
            script,
        }
    }

    /// One call through the stack: its result, or the panic that came out of it.
    pub async fn call(&self) -> Result<Result<F::Res, BoxError>, String> {
        catching(self.service.clone().oneshot(F::request())).await
    }

    /// Asserts that nothing is held anywhere in the stack.
    #[track_caller]
    pub fn assert_quiet(&self, context: &str) {
        assert_quiet(&self.layer.snapshot(), &self.handle, &self.script, context);
    }

    /// The breaker's state.
    pub fn breaker_state(&self) -> State {
        self.layer.snapshot().circuit_breaker.unwrap().state
    }

    /// Opens the breaker with failing calls (the endpoints are healthy again afterwards).
    pub async fn trip(&self) {
        self.script.reset(Fault::Fail);
        // At least 4 failures; more when the window still holds earlier successes.
        for _ in 0..30 {
            let _ = self.call().await.expect("a failing call does not panic");
            if self.breaker_state() == State::Open {
                break;
            }
        }
        self.script.reset(Fault::Ok);
        assert_eq!(self.breaker_state(), State::Open, "the failures tripped it");
    }

    /// Opens the breaker and waits out its open time: the next call is a half-open probe.
    pub async fn trip_and_wait(&self) {
        self.trip().await;
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }

    /// Healthy endpoints from now on: calls are made, 50 ms apart, until `n` in a row are
    /// answered with the breaker closed, waiting out an open breaker's `retry_after` (a
    /// closed window still holding earlier failures trips on the success that brings it to
    /// `minimum_calls`, as it should). Then the stack must be quiet. At most `n + 20` calls.
    pub async fn assert_recovers(&self, n: usize, context: &str) {
        self.script.reset(Fault::Ok);
        let mut in_a_row = 0;
        for _ in 0..n + 20 {
            let result = self.call().await.expect("a healthy call does not panic");
            if F::answered(&result) {
                in_a_row += 1;
                if in_a_row >= n && self.breaker_state() == State::Closed {
                    break;
                }
            } else {
                in_a_row = 0;
                let error = tower_prism::Error::from_box(result.expect_err("not answered"));
                assert_eq!(
                    error.kind(),
                    tower_prism::ErrorKind::CircuitOpen,
                    "{context}: {error}"
                );
                let wait = error.retry_after().unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(wait + Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(in_a_row >= n, "{context}: healthy calls keep being refused");
        assert_eq!(self.breaker_state(), State::Closed, "{context}");
        self.assert_quiet(context);
    }

    /// `n` calls, spaced out so the rate limiter never queues them, must all be answered by
    /// the endpoints; afterwards the breaker must be closed and the stack quiet.
    pub async fn assert_healthy(&self, n: usize, context: &str) {
        self.script.reset(Fault::Ok);
        for i in 0..n {
            let result = self.call().await.expect("a healthy call does not panic");
            assert!(
                F::answered(&result),
                "{context}: healthy call {i} was not answered: {:?} (breaker {:?})",
                result.as_ref().err(),
                self.layer.snapshot().circuit_breaker
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(self.breaker_state(), State::Closed, "{context}");
        self.assert_quiet(context);
    }
}
