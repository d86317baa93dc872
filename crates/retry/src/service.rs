//! [`Retry`]: the service.

use std::fmt::{self, Debug, Formatter};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_prism_core::internal::refusal;
use tower_prism_core::internal::route::Avoiding;
use tower_prism_core::{BoxError, Classify, DefaultClassifier, RequestDeadline};
use tower_service::Service;

use crate::attempts::{Attempts, CallPlan};
use crate::future::ResponseFuture;
use crate::handle::RetryHandle;
use crate::hint::{NoHint, ResponseHint};
use crate::replay::{CloneRequest, ReplayRequest};
use crate::stage::Stage;

/// Retries failed calls to `S`. Made by [`RetryLayer`](crate::RetryLayer); clones share
/// the layer's [`RetryHandle`]: its budget and settings.
///
/// `poll_ready` is the inner service's; a retry drives a clone of the inner service to
/// readiness inside the response future. The first attempt is sent from `call`, so a call
/// that succeeds at once costs a request copy, a few atomic operations and no allocation.
/// The clone a call's retries and hedges go through is made when the first of them is
/// due, from a clone of the inner service the stage keeps from its first call (shared by
/// its clones), so a call that needs none clones nothing. Services whose clones share
/// their state (a connection pool, a balancer, a `Buffer`) behave as if each retry
/// cloned the service of the call; one changed through [`get_mut`](Retry::get_mut) after
/// the first call is not what retries go through.
///
/// A retry stage made with [`pass_through`](Retry::pass_through) is switched off: it only
/// forwards to the inner service.
#[derive(Clone)]
pub struct Retry<S, C = DefaultClassifier, R = CloneRequest, H = NoHint> {
    inner: S,
    /// `None` in pass-through mode: the one branch a switched-off stage costs.
    engaged: Option<Engaged<S, C, R, H>>,
}

/// What an engaged retry service holds besides its inner service.
#[derive(Clone)]
pub(crate) struct Engaged<S, C, R, H> {
    /// The handle and the service retries go through, shared with every call's future.
    pub(crate) stage: Arc<Stage<S>>,
    pub(crate) classify: C,
    pub(crate) replay: R,
    pub(crate) hint: H,
    /// Each retry asks a balancer below for an endpoint the call has not tried (see
    /// [`Retry::avoid_tried_endpoints`]); hedges always do.
    pub(crate) avoid_tried: bool,
}

impl<S, C, R, H> Retry<S, C, R, H> {
    pub(crate) fn engaged(inner: S, engaged: Engaged<S, C, R, H>) -> Self {
        Retry {
            inner,
            engaged: Some(engaged),
        }
    }

    /// A retry stage that is switched off: `poll_ready` and `call` go straight to `inner`.
    /// The request is never copied or replayed; no budget, hedge, deadline check or
    /// endpoint routing is involved; no clock read, no atomic operation, no metric, no
    /// tracing event and no allocation: the only cost is one branch. An inner error comes
    /// back as the same [`BoxError`] an engaged stage returns for a failure it does not
    /// retry (it still downcasts to the inner error type).
    ///
    /// Unlike `ServiceBuilder::option_layer` (an `Either`), the type is the same as the
    /// engaged stage's, so a stack of optional stages stays one linear type.
    pub fn pass_through(inner: S) -> Self {
        Retry {
            inner,
            engaged: None,
        }
    }

    /// Sends each retry to an endpoint the call has not tried yet, when the service below
    /// is (or wraps) a `tower-prism-balance` balancer with another healthy endpoint; as
    /// Envoy's `previous_hosts` retry predicate. Hedges always do. Off by default, since
    /// the stage cannot see what is below it; the `tower-prism` facade turns it on for the
    /// stacks it builds over a balancer. The first attempt then learns its endpoint
    /// (a few thread-local reads and writes per call).
    pub fn avoid_tried_endpoints(mut self) -> Self {
        if let Some(engaged) = &mut self.engaged {
            engaged.avoid_tried = true;
        }
        self
    }

    /// The shared state of the retry stage: name, settings, budget, counters; `None` in
    /// [pass-through](Retry::pass_through) mode.
    pub fn handle(&self) -> Option<&RetryHandle> {
        self.engaged.as_ref().map(|e| &e.stage.handle)
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

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(engaged) = &self.engaged else {
            return ResponseFuture::pass_through(self.inner.call(req));
        };
        // Read alone, not as a snapshot: backoff and deadline are read when a retry is
        // planned, so only these are fixed at the start of the call.
        let shared = &engaged.stage.handle.shared;
        let max_attempts = shared.settings.max_attempts();
        let attempt_timeout = shared.settings.attempt_timeout();
        let mut hedge = shared.settings.hedge();
        // The deadline a deadline stage above is calling us under, if any.
        let deadline = RequestDeadline::current();
        // Tokio's clock only for `max_elapsed` (its deadline is a tokio instant); the budget
        // alone reads its own, cheaper, clock.
        let started = shared.settings.has_max_elapsed().then(Instant::now);
        if shared.budget.earns_per_attempt() {
            match started {
                Some(now) => shared.budget.deposit_at_instant(now),
                None => shared.budget.deposit(),
            }
        }
        let backup = if max_attempts > 1 || hedge.max_hedged > 0 {
            engaged.replay.replay(&req)
        } else {
            None
        };
        // A stage below refusing the first attempt is not refusing the request (it may be
        // sent again), so a rate limit above keeps the request's tokens.
        let mark = refusal::Mark::now();
        let tracked = (hedge.max_hedged > 0 || engaged.avoid_tried) && backup.is_some();
        let (future, avoid, sent_at) = if tracked {
            // Learn which endpoint a balancer below picks, so hedges and retries go
            // elsewhere.
            let avoiding = Avoiding::start(0);
            let future = self.inner.call(req);
            let bit = avoiding.picked();
            // A percentile delay records latencies, from this send on.
            let sent_at = (hedge.max_hedged > 0 && hedge.fixed.is_none())
                .then(|| started.unwrap_or_else(Instant::now));
            (future, bit, sent_at)
        } else {
            hedge.max_hedged = 0;
            (self.inner.call(req), 0, None)
        };
        mark.hide_since();
        let plan = CallPlan {
            max_attempts,
            attempt_timeout,
            started,
            deadline,
            hedge,
            sent_at,
            avoid,
        };
        // Retries go through a clone of the service kept at the stage's first call, made
        // when one is due, not through a clone made for every call (see `Stage`).
        engaged.stage.remember(&self.inner);
        ResponseFuture::engaged(Attempts::new(
            future,
            backup,
            engaged.stage.clone(),
            plan,
            engaged.classify.clone(),
            engaged.replay.clone(),
            engaged.hint.clone(),
        ))
    }
}

impl<S: Debug, C: Debug, R: Debug, H: Debug> Debug for Retry<S, C, R, H> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Retry");
        d.field("inner", &self.inner);
        match &self.engaged {
            Some(e) => d
                .field("handle", &e.stage.handle)
                .field("classify", &e.classify)
                .field("replay", &e.replay)
                .field("hint", &e.hint),
            None => d.field("pass_through", &true),
        };
        d.finish()
    }
}
