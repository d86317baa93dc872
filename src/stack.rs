//! The stages of the stack, nested in their fixed order: rate limit -> concurrency limit ->
//! circuit breaker -> retry -> (balance) -> inner. Private: users see
//! [`Reliability`](crate::Reliability) and its [`ResponseFuture`](crate::ResponseFuture),
//! so adding or moving a stage changes no public type.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower::util::Either;
use tower_prism_core::BoxError;
use tower_service::Service;

use crate::components::{BreakerService, ConcurrencyService, RateLimitService, RetryService};
use crate::profile::Profile;

/// The inner service with its errors boxed, so that every stage above sees [`BoxError`].
#[derive(Debug, Clone)]
pub struct BoxErrors<S> {
    inner: S,
}

impl<S> BoxErrors<S> {
    pub(crate) fn new(inner: S) -> Self {
        BoxErrors { inner }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for BoxErrors<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxErrorsFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        BoxErrorsFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`BoxErrors`].
    #[derive(Debug)]
    pub struct BoxErrorsFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for BoxErrorsFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(Into::into))
    }
}

/// The retry stage over the inner service (a balancer, or any service).
pub type RetryStage<S, P> = Either<RetryService<BoxErrors<S>, P>, BoxErrors<S>>;
/// The breaker stage over [`RetryStage`].
pub type BreakerStage<S, P> = Either<BreakerService<RetryStage<S, P>, P>, RetryStage<S, P>>;
/// The concurrency-limit stage over [`BreakerStage`].
pub type ConcurrencyStage<S, P> =
    Either<ConcurrencyService<BreakerStage<S, P>, P>, BreakerStage<S, P>>;
/// The rate-limit stage over [`ConcurrencyStage`], the top of the stack.
pub type Stack<S, P> = Either<RateLimitService<ConcurrencyStage<S, P>>, ConcurrencyStage<S, P>>;

/// Peels one stage: the service below an `Either` of a stage and its bypass.
macro_rules! below {
    ($stage:expr, $method:ident) => {
        match $stage {
            Either::Left(s) => s.$method(),
            Either::Right(s) => s,
        }
    };
}

/// The inner service at the bottom of a stack.
pub(crate) fn inner<S, P: Profile>(stack: &Stack<S, P>) -> &S {
    let concurrency = below!(stack, get_ref);
    let breaker = below!(concurrency, get_ref);
    let retry = below!(breaker, get_ref);
    below!(retry, get_ref).get_ref()
}

/// The inner service at the bottom of a stack, mutably.
pub(crate) fn inner_mut<S, P: Profile>(stack: &mut Stack<S, P>) -> &mut S {
    let concurrency = below!(stack, get_mut);
    let breaker = below!(concurrency, get_mut);
    let retry = below!(breaker, get_mut);
    below!(retry, get_mut).get_mut()
}

/// The inner service at the bottom of a stack, the stages dropped.
pub(crate) fn into_inner<S, P: Profile>(stack: Stack<S, P>) -> S {
    let concurrency = below!(stack, into_inner);
    let breaker = below!(concurrency, into_inner);
    let retry = below!(breaker, into_inner);
    below!(retry, into_inner).into_inner()
}

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
    Stack<S, P>: Service<Req, Error = BoxError>,
{
    type Response = <Stack<S, P> as Service<Req>>::Response;
    type Future = <Stack<S, P> as Service<Req>>::Future;

    #[inline]
    fn poll_ready(stack: &mut Stack<S, P>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        stack.poll_ready(cx)
    }

    #[inline]
    fn call(stack: &mut Stack<S, P>, req: Req) -> Self::Future {
        stack.call(req)
    }
}
