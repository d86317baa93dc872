//! The stages of the stack, nested in their fixed order: rate limit -> concurrency limit ->
//! deadline -> circuit breaker -> retry -> (propagate the deadline) -> (balance) -> fault
//! injection -> inner. Private: users see [`Reliability`](crate::Reliability) and its
//! [`ResponseFuture`](crate::ResponseFuture), so adding or moving a stage changes no public
//! type.
//!
//! Every stage is always there: one the policy does not configure is its own service in
//! pass-through mode (one branch per call). Not `tower::util::Either`: the future of an
//! `Either` names the stack below it twice, so each optional stage doubled the size of the
//! stack's type, and with eight stages the compiler ran out of memory. The one exception is
//! decided by the profile, not the policy: a profile that cannot retry (a server's) has no
//! retry stage at all ([`RetryKind`]), nor the stage below it writing each attempt's
//! deadline: a pass-through retry stage would still carry the retry's call state in every
//! call's future, and a wrapper around the fault stage would copy the request and the
//! response once more per call.
//!
//! One split is made once, for the two stages between the rate limit and the breaker: a
//! policy with neither a concurrency limit nor a deadline runs a [`LeanStack`], the rate
//! limit right over the breaker; the others run the [`FullStack`]. A reload cannot add a
//! stage table (only `fault`'s), so a stack never needs the stages it was built without.
//! The two pass-through stages cost a request and a response copied through each of
//! them, one branch each way and their futures' drops: about 290 of the HTTP server
//! stack's instructions per call (callgrind, `scripts/call-count`). The split is one
//! [`Stack`] enum over both, not an `Either` per stage: the type below the breaker is
//! named once in each, and the stack's type grows by the stages above the breaker only.
//!
//! A lean stack without a retry stage (a server's) is a [`DirectStack`]: its stages over no
//! service, shared by all its clones behind one `Arc`, beside the service. It makes its
//! calls in one future: the stages decide in its `call` and the inner service's future is
//! the stack's (see [`direct`]). Its future's variants for those calls are
//! [`RetryKind::Direct`], which takes no room in a client's stack, whose calls never take
//! that way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use tower_prism_core::internal::{reading, take_ready};
use tower_prism_core::{BoxError, Classify};
use tower_prism_fault::InjectStatus;
use tower_prism_limit::rate::{KeyFn, RateHeaders};
use tower_service::Service;

use crate::components::{
    BreakerService, ConcurrencyService, DeadlineService, FaultService, RateLimitService,
};
use crate::direct::{self, DirectCall};
use crate::profile::Profile;
use crate::retry_kind::RetryKind;

/// The fault stage over the inner service; it boxes the inner service's errors, so every
/// stage above sees [`BoxError`].
pub type FaultStage<S, P> = FaultService<S, P>;
/// The retry stage, with the stage writing each attempt's deadline below it, over
/// [`FaultStage`] (neither, for a profile whose stack has no retry stage).
pub type RetryStage<S, P> = <<P as Profile>::Retries as RetryKind>::Stage<FaultStage<S, P>, P>;
/// The breaker stage over [`RetryStage`].
pub type BreakerStage<S, P> = BreakerService<RetryStage<S, P>, P>;
/// The deadline stage over [`BreakerStage`].
pub type DeadlineStage<S, P> = DeadlineService<BreakerStage<S, P>, P>;
/// The concurrency-limit stage over [`DeadlineStage`].
pub type ConcurrencyStage<S, P> = ConcurrencyService<DeadlineStage<S, P>, P>;
/// Every stage: the rate-limit stage over [`ConcurrencyStage`].
pub type FullStack<S, P> = RateLimitService<ConcurrencyStage<S, P>, P>;
/// The stages of a policy with neither a concurrency limit nor a deadline: the rate-limit
/// stage right over [`BreakerStage`].
pub type LeanStack<S, P> = RateLimitService<BreakerStage<S, P>, P>;

/// The stages over `S`: all of them, or all but the concurrency limit and the deadline
/// when the policy has neither (see the module's doc).
pub enum Stack<S, P: Profile> {
    /// Every stage, the ones the policy leaves out passing calls through.
    Full(FullStack<S, P>),
    /// No concurrency-limit and no deadline stage.
    Lean(LeanStack<S, P>),
    /// A lean stack without a retry stage (a server's): its calls run in one future.
    Direct(DirectStack<S, P>),
}

impl<S, P: Profile> Clone for Stack<S, P>
where
    FullStack<S, P>: Clone,
    LeanStack<S, P>: Clone,
    S: Clone,
{
    // Inline, as every stage's: axum clones the stack for every request.
    #[inline]
    fn clone(&self) -> Self {
        match self {
            Stack::Full(stack) => Stack::Full(stack.clone()),
            Stack::Lean(stack) => Stack::Lean(stack.clone()),
            Stack::Direct(stack) => Stack::Direct(stack.clone()),
        }
    }
}

/// Where the stages of a [`DirectStack`] have their inner service: nowhere. Never called.
#[derive(Debug, Clone, Copy)]
pub struct Detached;

/// A server's lean stack: its stages over no service, in one allocation that every clone
/// shares, beside the service itself. axum clones a route's service for every request:
/// a clone of the stages as services took a reference on each stage's state (the
/// limiter's, the breaker's, the fault stage's), three increments and three decrements
/// of shared counters per request; this takes one of each.
///
/// A call decides in the stages' `admit`s and `draw` and calls the service itself (see
/// [`direct`]); one that needs a stage's own future (a rate limit that queues it) goes
/// through the stages [`attached`](DirectStack::attached) to the service for that call.
pub struct DirectStack<S, P: Profile> {
    stages: Arc<LeanStack<Detached, P>>,
    inner: S,
}

impl<S: Clone, P: Profile> Clone for DirectStack<S, P> {
    #[inline]
    fn clone(&self) -> Self {
        DirectStack {
            stages: self.stages.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<S, P: Profile> DirectStack<S, P> {
    pub(crate) fn new(stages: LeanStack<Detached, P>, inner: S) -> Self {
        DirectStack {
            stages: Arc::new(stages),
            inner,
        }
    }

    /// The stages, over no service.
    pub(crate) fn stages(&self) -> &LeanStack<Detached, P> {
        &self.stages
    }

    /// The stages (over no service) and the service below them.
    pub(crate) fn parts(&mut self) -> (&LeanStack<Detached, P>, &mut S) {
        (&self.stages, &mut self.inner)
    }

    /// The fault stage of `stages`, right under the breaker.
    pub(crate) fn fault(stages: &LeanStack<Detached, P>) -> &FaultStage<Detached, P> {
        let Some(fault) = P::Retries::no_stage(stages.get_ref().get_ref()) else {
            unreachable!("`Stages::stack` makes a direct stack only without a retry stage");
        };
        fault
    }

    /// The stages over the service, for one call through their own futures. The service
    /// that was made ready goes into them (`poll_ready` readied it for one call), and a
    /// clone takes its place here, to be readied for the next call.
    #[cold]
    pub(crate) fn attached(&mut self) -> LeanStack<S, P>
    where
        S: Clone,
    {
        let ready = take_ready(&mut self.inner);
        let fault = Self::fault(&self.stages).with_inner(ready);
        let retry = P::Retries::stage::<_, P>(None, None, fault);
        self.stages
            .with_inner(self.stages.get_ref().with_inner(retry))
    }
}

/// The inner service at the bottom of a stack.
pub(crate) fn inner<S, P: Profile>(stack: &Stack<S, P>) -> &S {
    let breaker = match stack {
        Stack::Full(stack) => stack.get_ref().get_ref().get_ref(),
        Stack::Lean(stack) => stack.get_ref(),
        Stack::Direct(stack) => return &stack.inner,
    };
    let retry = breaker.get_ref();
    let fault = P::Retries::get_ref::<_, P>(retry);
    fault.get_ref()
}

/// The inner service at the bottom of a stack, mutably.
pub(crate) fn inner_mut<S, P: Profile>(stack: &mut Stack<S, P>) -> &mut S {
    let breaker = match stack {
        Stack::Full(stack) => stack.get_mut().get_mut().get_mut(),
        Stack::Lean(stack) => stack.get_mut(),
        Stack::Direct(stack) => return &mut stack.inner,
    };
    let retry = breaker.get_mut();
    let fault = P::Retries::get_mut::<_, P>(retry);
    fault.get_mut()
}

/// The inner service at the bottom of a stack, the stages dropped.
pub(crate) fn into_inner<S, P: Profile>(stack: Stack<S, P>) -> S {
    let breaker = match stack {
        Stack::Full(stack) => stack.into_inner().into_inner().into_inner(),
        Stack::Lean(stack) => stack.into_inner(),
        Stack::Direct(stack) => return stack.inner,
    };
    let retry = breaker.into_inner();
    let fault = P::Retries::into_inner::<_, P>(retry);
    fault.into_inner()
}

pin_project! {
    /// The response future of a [`Stack`]: its full or its lean stages' futures, or a call
    /// that runs every stage in this one future (a server's lean stack; see [`direct`]).
    #[project = StackFutureProj]
    pub enum StackFuture<Full, Lean, Direct, Faulted> {
        /// A call through a [`FullStack`].
        Full { #[pin] future: Full },
        /// A call through a [`LeanStack`]'s own stages, or refused by them.
        Lean { #[pin] future: Lean },
        /// The inner service's future, in one future with the stages' part of the call.
        Direct { #[pin] call: Direct },
        /// The same, with the fault stage's future in place of the inner service's: a
        /// fault was drawn for this call.
        Faulted { #[pin] call: Faulted },
    }
}

impl<Full, Lean, Direct, Faulted, T> Future for StackFuture<Full, Lean, Direct, Faulted>
where
    Full: Future<Output = Result<T, BoxError>>,
    Lean: Future<Output = Result<T, BoxError>>,
    Direct: Future<Output = Result<T, BoxError>>,
    Faulted: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // One clock reading for the stages that time the call as it completes (the breaker,
        // the retry budget, the balancer). A guard rather than `reading::shared`'s closure:
        // the response is written once, not returned through the closure and copied. A
        // call in one future has one such stage, the breaker, and no need of the scope.
        match self.project() {
            StackFutureProj::Full { future } => {
                let _scope = reading::enter();
                future.poll(cx)
            }
            StackFutureProj::Lean { future } => {
                let _scope = reading::enter();
                future.poll(cx)
            }
            StackFutureProj::Direct { call } => call.poll(cx),
            StackFutureProj::Faulted { call } => call.poll(cx),
        }
    }
}

/// The response future of a [`LeanStack`] (the rate-limit stage's), named rather than
/// projected, so that a call in one future can fail through it.
pub type LeanFuture<S, P, Req> =
    tower_prism_limit::rate::ResponseFuture<BreakerStage<S, P>, Req, <P as Profile>::RateHeaders>;

/// The stack's response future over `S`: its variants' types, named once.
pub type StackFutureOf<S, P, Req> = StackFuture<
    <FullStack<S, P> as Service<Req>>::Future,
    LeanFuture<S, P, Req>,
    DirectOf<S, P, Req, <S as Service<Req>>::Future>,
    DirectOf<S, P, Req, tower_prism_fault::ResponseFuture<S, Req>>,
>;

/// A call over `S` in one future around `F` (the inner service's or the fault stage's
/// future), as [`RetryKind::Direct`]: a stack with a retry stage makes none, and the
/// variants that would hold one take no room in its future.
pub type DirectOf<S, P, Req, F> = <<P as Profile>::Retries as RetryKind>::Direct<
    DirectCall<
        F,
        <P as Profile>::Classify,
        <P as Profile>::RateHeaders,
        <<P as Profile>::RateHeaders as RateHeaders<<S as Service<Req>>::Response>>::Stamp,
    >,
>;

/// What a [`Stack`] over `Self` does as a service, stated on the inner service `Self` so
/// that public bounds (`S: Stacked<P, Req>`) never spell out the stages: rustdoc would
/// expand a bound on the private `Stack` alias into the whole nested layout.
pub trait Stacked<P: Profile, Req>: Sized {
    /// The response of the whole stack (the inner service's).
    type Response;
    /// The response future of the whole stack.
    type Future: Future<Output = Result<Self::Response, BoxError>>;

    /// Drives the stages' and the inner service's readiness.
    fn poll_ready(stack: &mut Stack<Self, P>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;

    /// Calls through every stage.
    fn call(stack: &mut Stack<Self, P>, req: Req) -> Self::Future;
}

impl<S, P: Profile, Req> Stacked<P, Req> for S
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    FullStack<S, P>: Service<Req, Response = S::Response, Error = BoxError>,
    BreakerStage<S, P>: Service<Req, Response = S::Response, Error = BoxError>,
    LeanStack<S, P>:
        Service<Req, Response = S::Response, Error = BoxError, Future = LeanFuture<S, P, Req>>,
    P::Classify: Classify<S::Response, BoxError>,
    P::RateKey: KeyFn<Req>,
    P::RateHeaders: RateHeaders<S::Response>,
    P::FaultStatus: InjectStatus<S::Response>,
{
    type Response = S::Response;
    type Future = StackFutureOf<S, P, Req>;

    #[inline]
    fn poll_ready(stack: &mut Stack<S, P>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match stack {
            Stack::Full(stack) => reading::shared(|| stack.poll_ready(cx)),
            Stack::Lean(stack) => reading::shared(|| stack.poll_ready(cx)),
            // The stages' own `poll_ready`s pass through to the service: none reads the time.
            Stack::Direct(stack) => stack.inner.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(stack: &mut Stack<S, P>, req: Req) -> Self::Future {
        // The stages read the clock once for the call (a direct stack's, only while they
        // decide: see `direct::call`).
        match stack {
            Stack::Full(stack) => StackFuture::Full {
                future: reading::shared_with(req, |req| stack.call(req)),
            },
            Stack::Lean(stack) => StackFuture::Lean {
                future: reading::shared_with(req, |req| stack.call(req)),
            },
            Stack::Direct(stack) => direct::call::<S, P, Req>(stack, req),
        }
    }
}

/// That a [`Stack`] over `Self` can be cloned (its every stage can), stated on the inner
/// service for the same reason as [`Stacked`]: a stack without a retry stage has none to
/// clone, so the bound depends on the profile.
pub trait StackClone<P: Profile>: Sized {
    /// A clone of `stack`: its clones share every stage's state.
    fn clone_stack(stack: &Stack<Self, P>) -> Stack<Self, P>;
}

impl<S, P: Profile> StackClone<P> for S
where
    Stack<S, P>: Clone,
{
    #[inline]
    fn clone_stack(stack: &Stack<S, P>) -> Stack<S, P> {
        stack.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::any::type_name;

    use std::sync::Arc;

    use super::{FullStack, LeanStack, Stack};
    use crate::profile::{Generic, GrpcServer, Http, HttpServer};
    use crate::stages::{Below, Stages};

    #[derive(Clone)]
    struct Inner;

    #[test]
    fn a_server_stack_has_no_retry_stage_nor_the_stage_below_one() {
        for (profile, stack) in [
            ("http_server", type_name::<FullStack<Inner, HttpServer>>()),
            ("http_server", type_name::<LeanStack<Inner, HttpServer>>()),
            ("grpc_server", type_name::<FullStack<Inner, GrpcServer>>()),
            ("grpc_server", type_name::<LeanStack<Inner, GrpcServer>>()),
        ] {
            assert!(
                !stack.contains("Retry") && !stack.contains("PropagateDeadline"),
                "{profile}: {stack}"
            );
            assert!(stack.contains("Fault<"), "{profile}: {stack}");
        }
        for stack in [
            type_name::<FullStack<Inner, Generic>>(),
            type_name::<LeanStack<Inner, Generic>>(),
            type_name::<FullStack<Inner, Http>>(),
            type_name::<LeanStack<Inner, Http>>(),
        ] {
            assert!(
                stack.contains("Retry<") && stack.contains("PropagateDeadline<"),
                "{stack}"
            );
        }
    }

    #[test]
    fn a_servers_lean_stack_shares_one_copy_of_its_stages_among_its_clones() {
        let health = tower_prism_core::HealthSignal::new();
        let policy = crate::PolicyConfig::default();
        let stages = Stages::new("api".to_owned(), health, HttpServer, &policy).unwrap();
        let Stack::Direct(stack) = stages.stack(Inner, Below::Service) else {
            panic!("a server's policy without a concurrency limit or deadline is direct");
        };
        let clones = [stack.clone(), stack.clone()];
        assert_eq!(Arc::strong_count(&stack.stages), 3);
        drop(clones);
        assert_eq!(Arc::strong_count(&stack.stages), 1);
    }

    #[test]
    fn a_lean_stack_has_neither_a_concurrency_limit_nor_a_deadline_stage() {
        let lean = type_name::<LeanStack<Inner, HttpServer>>();
        assert!(
            !lean.contains("ConcurrencyLimit<") && !lean.contains("Deadline<"),
            "{lean}"
        );
        let full = type_name::<FullStack<Inner, HttpServer>>();
        assert!(
            full.contains("ConcurrencyLimit<") && full.contains("Deadline<"),
            "{full}"
        );
    }
}
