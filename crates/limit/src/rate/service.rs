//! [`RateLimit`]: the rate-limiting service.

use std::fmt;
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
/// `poll_ready`), boxed in a [`BoxError`]. A [`pass_through`](RateLimit::pass_through)
/// service has no limiter and forwards every call.
#[derive(Clone)]
pub struct RateLimit<S, K = Unkeyed, P = SamePriority, W = UnitWeight> {
    inner: S,
    // `None` in pass-through mode: everything a limited call needs lives here, so that a
    // switched-off stage is one branch and holds no limiter.
    engaged: Option<Engaged<K, P, W>>,
}

/// The limiter and the request functions of an engaged [`RateLimit`].
#[derive(Debug, Clone)]
struct Engaged<K, P, W> {
    limiter: RateLimiter,
    key: K,
    priority: P,
    weight: W,
}

impl<S> RateLimit<S> {
    /// Wraps `inner` with an unkeyed, unweighted `limiter`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        Self::from_parts(inner, limiter, Unkeyed, SamePriority, UnitWeight)
    }

    /// A rate limit that is switched off: `poll_ready` and `call` go straight to `inner`
    /// (its error boxed into a [`BoxError`], as the engaged stage does), with no clock
    /// read, no atomic, no metric and no allocation: one branch per call.
    ///
    /// Unlike `ServiceBuilder::option_layer` (an `Either`), the type is the same as the
    /// engaged stage's, so a stack of optional stages stays one linear type.
    pub fn pass_through(inner: S) -> Self {
        RateLimit {
            inner,
            engaged: None,
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
            engaged: Some(Engaged {
                limiter,
                key,
                priority,
                weight,
            }),
        }
    }

    /// The shared limiter (for snapshots and reconfiguration); `None` in pass-through mode.
    pub fn handle(&self) -> Option<&RateLimiter> {
        self.engaged.as_ref().map(|engaged| &engaged.limiter)
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

impl<S: fmt::Debug, K: fmt::Debug, P: fmt::Debug, W: fmt::Debug> fmt::Debug
    for RateLimit<S, K, P, W>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RateLimit");
        d.field("inner", &self.inner);
        match &self.engaged {
            Some(engaged) => d
                .field("limiter", &engaged.limiter)
                .field("key", &engaged.key)
                .field("priority", &engaged.priority)
                .field("weight", &engaged.weight),
            None => d.field("pass_through", &true),
        };
        d.finish()
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
        let Some(engaged) = &self.engaged else {
            // Pass-through: the plain forwarding state an admitted call uses too.
            return ResponseFuture::called(self.inner.call(request));
        };
        let weight = engaged.weight.weight(&request);
        let bucket = engaged.key.bucket(&request, &engaged.limiter);
        match engaged.limiter.fast(bucket, weight) {
            Fast::Admitted => ResponseFuture::called(self.inner.call(request)),
            Fast::Rejected(error) => ResponseFuture::failed(error),
            Fast::Queue => {
                let priority = engaged.priority.priority(&request);
                match engaged
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
