//! [`RedisRateLimit`]: the service that asks Redis before calling the inner one.

use std::task::{Context, Poll};

use tower_prism_core::BoxError;
use tower_service::Service;

use super::future::ResponseFuture;
use super::limiter::RedisRateLimiter;
use super::policy::RedisKeyFn;
use crate::rate::Unkeyed;
use tower_prism_core::internal::take_ready;

/// The service made by [`RedisRateLimitLayer`](super::RedisRateLimitLayer); the decision
/// is made in the response future (never in `poll_ready`), which then calls the inner
/// service.
#[derive(Debug, Clone)]
pub struct RedisRateLimit<S, K = Unkeyed> {
    inner: S,
    limiter: RedisRateLimiter,
    key: K,
}

impl<S, K> RedisRateLimit<S, K> {
    pub(super) fn from_parts(inner: S, limiter: RedisRateLimiter, key: K) -> Self {
        RedisRateLimit {
            inner,
            limiter,
            key,
        }
    }

    /// The shared limiter (for snapshots).
    pub fn handle(&self) -> &RedisRateLimiter {
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

impl<S, K, Req> Service<Req> for RedisRateLimit<S, K>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: RedisKeyFn<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = self.key.key(&request);
        let limiter = self.limiter.clone();
        let decision = Box::pin(async move { limiter.state.decide(key.as_deref()).await });
        ResponseFuture::new(decision, take_ready(&mut self.inner), request)
    }
}
