//! The stacked service: rate limit -> concurrency limit -> circuit breaker -> retry ->
//! (balance) -> inner.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower::util::Either;
use tower::BoxError;
use tower_service::Service;

use crate::components::{BreakerService, ConcurrencyService, RateLimitService, RetryService};
use crate::profile::{Generic, Profile};

/// The inner service with its errors boxed, so that every stage above sees [`BoxError`].
#[derive(Debug, Clone)]
pub struct BoxErrors<S> {
    inner: S,
}

impl<S> BoxErrors<S> {
    pub(crate) fn new(inner: S) -> Self {
        BoxErrors { inner }
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
pub type RetryStage<S, P = Generic> = Either<RetryService<BoxErrors<S>, P>, BoxErrors<S>>;
/// The breaker stage over [`RetryStage`].
pub type BreakerStage<S, P = Generic> =
    Either<BreakerService<RetryStage<S, P>, P>, RetryStage<S, P>>;
/// The concurrency-limit stage over [`BreakerStage`].
pub type ConcurrencyStage<S, P = Generic> =
    Either<ConcurrencyService<BreakerStage<S, P>, P>, BreakerStage<S, P>>;
/// The rate-limit stage over [`ConcurrencyStage`], the top of the stack.
pub type RateLimitStage<S, P = Generic> =
    Either<RateLimitService<ConcurrencyStage<S, P>>, ConcurrencyStage<S, P>>;

/// The service a [`ReliabilityLayer`](crate::ReliabilityLayer) makes: every configured stage
/// over `S` (with the balance stage, `S` is the balancer), in the fixed order. Stages that were not configured are skipped at the cost of
/// one branch. Clones share every stage's state.
///
/// Errors are [`BoxError`]s; [`crate::Error::from_box`] classifies them.
pub struct Reliable<S, P: Profile = Generic> {
    pub(crate) inner: RateLimitStage<S, P>,
}

impl<S: Clone, P: Profile> Clone for Reliable<S, P> {
    fn clone(&self) -> Self {
        Reliable {
            inner: self.inner.clone(),
        }
    }
}

impl<S: fmt::Debug, P: Profile> fmt::Debug for Reliable<S, P>
where
    P::Classify: fmt::Debug,
    P::Replay: fmt::Debug,
    P::Hint: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reliable")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, P: Profile, Req> Service<Req> for Reliable<S, P>
where
    RateLimitStage<S, P>: Service<Req, Error = BoxError>,
{
    type Response = <RateLimitStage<S, P> as Service<Req>>::Response;
    type Error = BoxError;
    type Future = <RateLimitStage<S, P> as Service<Req>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}
