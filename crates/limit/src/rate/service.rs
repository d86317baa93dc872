//! [`RateLimit`]: the rate-limiting service.

use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use tower_prism_core::BoxError;

use super::future::ResponseFuture;
use super::limiter::{Fast, RateLimiter};
use super::policy::{KeyFn, PriorityFn, SamePriority, UnitWeight, Unkeyed, WeightFn};
use crate::ready::take_ready;

/// Admits requests to `S` at the limiter's rate. Clones share the limiter.
///
/// Rejections are [`Error`](crate::Error)s returned from the response future (never from
/// `poll_ready`), boxed in a [`BoxError`].
#[derive(Debug, Clone)]
pub struct RateLimit<S, K = Unkeyed, P = SamePriority, W = UnitWeight> {
    inner: S,
    limiter: RateLimiter,
    key: K,
    priority: P,
    weight: W,
}

impl<S> RateLimit<S> {
    /// Wraps `inner` with an unkeyed, unweighted `limiter`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        RateLimit {
            inner,
            limiter,
            key: Unkeyed,
            priority: SamePriority,
            weight: UnitWeight,
        }
    }
}

impl<S, K, P, W> RateLimit<S, K, P, W> {
    pub(crate) fn from_parts(
        inner: S,
        limiter: RateLimiter,
        key: K,
        priority: P,
        weight: W,
    ) -> Self {
        RateLimit {
            inner,
            limiter,
            key,
            priority,
            weight,
        }
    }

    /// The shared limiter (for snapshots and reconfiguration).
    pub fn handle(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, K, P, W> Service<Req> for RateLimit<S, K, P, W>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: KeyFn<Req>,
    P: PriorityFn<Req>,
    W: WeightFn<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let weight = self.weight.weight(&request);
        let bucket = self.key.bucket(&request, &self.limiter);
        match self.limiter.fast(bucket, weight) {
            Fast::Admitted => ResponseFuture::called(self.inner.call(request)),
            Fast::Rejected(error) => ResponseFuture::failed(error),
            Fast::Queue => {
                let priority = self.priority.priority(&request);
                match self
                    .limiter
                    .enqueue(bucket, weight, priority, Instant::now())
                {
                    Ok(None) => ResponseFuture::called(self.inner.call(request)),
                    Ok(Some(waiter)) => {
                        ResponseFuture::waiting(waiter, take_ready(&mut self.inner), request)
                    }
                    Err(error) => ResponseFuture::failed(error),
                }
            }
        }
    }
}
