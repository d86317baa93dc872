//! The stacked service: rate limit -> circuit breaker -> retry -> (balance) -> inner.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower::util::Either;
use tower::BoxError;
use tower_service::Service;

use crate::components::{BreakerService, RateLimitService, RetryService};

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
pub type RetryStage<S> = Either<RetryService<BoxErrors<S>>, BoxErrors<S>>;
/// The breaker stage over [`RetryStage`].
pub type BreakerStage<S> = Either<BreakerService<RetryStage<S>>, RetryStage<S>>;
/// The rate-limit stage over [`BreakerStage`], the top of the stack.
pub type RateLimitStage<S> = Either<RateLimitService<BreakerStage<S>>, BreakerStage<S>>;

/// The service a [`ReliabilityLayer`](crate::ReliabilityLayer) makes: every configured stage
/// over `S` (with the balance stage, `S` is the balancer), in the fixed order. Stages that were not configured are skipped at the cost of
/// one branch. Clones share every stage's state.
///
/// Errors are [`BoxError`]s; [`crate::Error::from_box`] classifies them.
#[derive(Debug, Clone)]
pub struct Reliable<S> {
    pub(crate) inner: RateLimitStage<S>,
}

impl<S, Req> Service<Req> for Reliable<S>
where
    RateLimitStage<S>: Service<Req, Error = BoxError>,
{
    type Response = <RateLimitStage<S> as Service<Req>>::Response;
    type Error = BoxError;
    type Future = <RateLimitStage<S> as Service<Req>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}
