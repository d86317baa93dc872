//! [`Retry`]: the service.

use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_prism_core::internal::route::call_avoiding;
use tower_prism_core::{BoxError, Classify, DefaultClassifier, RequestDeadline};
use tower_service::Service;

use crate::future::{CallPlan, ResponseFuture};
use crate::handle::RetryHandle;
use crate::hint::{NoHint, ResponseHint};
use crate::replay::{CloneRequest, ReplayRequest};

/// Retries failed calls to `S`. Made by [`RetryLayer`](crate::RetryLayer); clones share
/// the layer's [`RetryHandle`]: its budget and settings.
///
/// `poll_ready` is the inner service's; a retry drives a clone of the inner service to
/// readiness inside the response future. The first attempt is sent from `call`, so a call
/// that succeeds at once costs a request copy, a few atomic operations and no allocation.
#[derive(Debug, Clone)]
pub struct Retry<S, C = DefaultClassifier, R = CloneRequest, H = NoHint> {
    pub(crate) inner: S,
    pub(crate) handle: RetryHandle,
    pub(crate) classify: C,
    pub(crate) replay: R,
    pub(crate) hint: H,
}

impl<S, C, R, H> Retry<S, C, R, H> {
    /// The shared state of the retry stage: name, settings, budget, counters.
    pub fn handle(&self) -> &RetryHandle {
        &self.handle
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, C, R, H> Service<Req> for Retry<S, C, R, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
    R: ReplayRequest<Req> + Clone,
    H: ResponseHint<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, R, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // Read alone, not as a snapshot: backoff and deadline are read when a retry is
        // planned, so only these are fixed at the start of the call.
        let shared = &self.handle.shared;
        let max_attempts = shared.settings.max_attempts();
        let attempt_timeout = shared.settings.attempt_timeout();
        let mut hedge = shared.settings.hedge();
        // The deadline a deadline stage above is calling us under, if any.
        let deadline = RequestDeadline::current();
        // One clock read, and only when the budget or a deadline needs it.
        let budget = shared.budget.earns_per_attempt();
        let started = (budget || shared.settings.has_max_elapsed()).then(Instant::now);
        if let (true, Some(now)) = (budget, started) {
            shared.budget.deposit_at_instant(now);
        }
        let backup = if max_attempts > 1 || hedge.max_hedged > 0 {
            self.replay.replay(&req)
        } else {
            None
        };
        let (future, avoid, sent_at) = if hedge.max_hedged > 0 && backup.is_some() {
            // Learn which endpoint a balancer below picks, so hedges go elsewhere.
            let (future, bit) = call_avoiding(0, || self.inner.call(req));
            // A percentile delay records latencies, from this send on.
            let sent_at = hedge
                .fixed
                .is_none()
                .then(|| started.unwrap_or_else(Instant::now));
            (future, bit, sent_at)
        } else {
            hedge.max_hedged = 0;
            (self.inner.call(req), 0, None)
        };
        let plan = CallPlan {
            max_attempts,
            attempt_timeout,
            started,
            deadline,
            hedge,
            sent_at,
            avoid,
        };
        ResponseFuture::new(
            future,
            self.inner.clone(),
            backup,
            self.handle.clone(),
            plan,
            self.classify.clone(),
            self.replay.clone(),
            self.hint.clone(),
        )
    }
}
