//! [`RateLimit`]: the rate-limiting service.

use std::fmt;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use tower_prism_core::internal::refusal;
use tower_prism_core::BoxError;

use super::future::ResponseFuture;
use super::headers::{NoHeaders, RateHeaders};
use super::limiter::{Fast, RateLimiter};
use super::policy::{KeyFn, PriorityFn, SamePriority, UnitWeight, Unkeyed, WeightFn};
use super::waiter::Enqueued;
use crate::bucket::TokensLeft;
use tower_prism_core::internal::take_ready;

/// Admits requests to `S` at the limiter's rate. Clones share the limiter.
///
/// Rejections are [`Error`](crate::Error)s returned from the response future (never from
/// `poll_ready`), boxed in a [`BoxError`]. A [`pass_through`](RateLimit::pass_through)
/// service has no limiter and forwards every call.
///
/// With [`refund_shed`](super::RateLimitLayer::refund_shed), a request that a
/// [`ConcurrencyLimit`](crate::concurrency::ConcurrencyLimit) below sheds at once gives its
/// tokens back.
///
/// `K` picks a request's bucket ([`KeyFn`]), `P` its priority in the queue, `W` its
/// weight, and `H` what goes on the response ([`RateHeaders`]: nothing by default;
/// [`HttpHeaders`](super::HttpHeaders) for rate-limit headers on HTTP responses).
pub struct RateLimit<S, K = Unkeyed, P = SamePriority, W = UnitWeight, H = NoHeaders> {
    inner: S,
    // `None` in pass-through mode: everything a limited call needs lives here, so that a
    // switched-off stage is one branch and holds no limiter.
    engaged: Option<Engaged<K, P, W>>,
    headers: PhantomData<fn() -> H>,
}

impl<S: Clone, K: Clone, P: Clone, W: Clone, H> Clone for RateLimit<S, K, P, W, H> {
    // Inline: axum clones the stack for every request.
    #[inline]
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            engaged: self.engaged.clone(),
            headers: PhantomData,
        }
    }
}

/// The limiter and the request functions of an engaged [`RateLimit`].
#[derive(Debug, Clone)]
pub(super) struct Engaged<K, P, W> {
    pub(super) limiter: RateLimiter,
    pub(super) key: K,
    pub(super) priority: P,
    pub(super) weight: W,
    /// Whether a request shed at once below gives its tokens back.
    pub(super) refund_shed: bool,
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
    /// engaged stage's, so a stack of optional stages stays one linear type. For other
    /// key, priority, weight or header types, see [`pass_through_as`](Self::pass_through_as).
    pub fn pass_through(inner: S) -> Self {
        Self::pass_through_as(inner)
    }
}

impl<S, K, P, W, H> RateLimit<S, K, P, W, H> {
    /// [`pass_through`](RateLimit::pass_through) as a service of any key, priority,
    /// weight and header types, to stand where an engaged stage of those types would
    /// (`RateLimit::<_, HttpKey, SamePriority, UnitWeight, HttpHeaders>::pass_through_as(inner)`).
    pub fn pass_through_as(inner: S) -> Self {
        RateLimit {
            inner,
            engaged: None,
            headers: PhantomData,
        }
    }

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
                refund_shed: false,
            }),
            headers: PhantomData,
        }
    }

    pub(crate) fn with_refund_shed(mut self, on: bool) -> Self {
        if let Some(engaged) = &mut self.engaged {
            engaged.refund_shed = on;
        }
        self
    }

    /// This stage over `inner` instead, sharing its limiter (a facade stack keeps one
    /// copy of its stages for all its clones and puts them over its service when a call
    /// needs the stage's own future). Not a public API: the facade's internals.
    #[doc(hidden)]
    pub fn with_inner<T>(&self, inner: T) -> RateLimit<T, K, P, W, H>
    where
        K: Clone,
        P: Clone,
        W: Clone,
    {
        RateLimit {
            inner,
            engaged: self.engaged.clone(),
            headers: PhantomData,
        }
    }

    /// The shared limiter (for snapshots and reconfiguration); `None` in pass-through mode.
    pub fn handle(&self) -> Option<&RateLimiter> {
        self.engaged.as_ref().map(|engaged| &engaged.limiter)
    }

    /// The limiter and request functions; `None` in pass-through mode.
    pub(super) fn engaged(&self) -> Option<&Engaged<K, P, W>> {
        self.engaged.as_ref()
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

impl<S: fmt::Debug, K: fmt::Debug, P: fmt::Debug, W: fmt::Debug, H> fmt::Debug
    for RateLimit<S, K, P, W, H>
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

impl<S, Req, K, P, W, H> Service<Req> for RateLimit<S, K, P, W, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: KeyFn<Req>,
    P: PriorityFn<Req>,
    W: WeightFn<Req>,
    H: RateHeaders<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let Some(engaged) = &self.engaged else {
            // Pass-through: the plain forwarding state an admitted call uses too.
            return ResponseFuture::forward(self.inner.call(request));
        };
        let weight = engaged.weight.weight(&request);
        let bucket = engaged.key.bucket(&request, &engaged.limiter);
        let limiter = &engaged.limiter;
        match limiter.fast(bucket, weight) {
            Fast::Admitted(left) => {
                let stamp = H::stamp(limiter, left);
                let refund = engaged.refund_shed.then_some((limiter, bucket, weight));
                call_admitted(&mut self.inner, request, stamp, refund)
            }
            Fast::Rejected(error) => ResponseFuture::failed(H::reject(error, limiter)),
            Fast::Queue => {
                let priority = engaged.priority.priority(&request);
                match engaged
                    .limiter
                    .enqueue(bucket, weight, priority, Instant::now())
                {
                    // Admitted at once (another bucket's requests wait): what its bucket
                    // has left.
                    Ok(Enqueued::Admitted(left)) => {
                        let stamp = H::stamp(limiter, left);
                        let refund = engaged.refund_shed.then_some((limiter, bucket, weight));
                        call_admitted(&mut self.inner, request, stamp, refund)
                    }
                    // Admitted after the wait: the bucket was empty, so a queued call
                    // reports no tokens left.
                    Ok(Enqueued::Waiting(waiter)) => ResponseFuture::waiting(
                        waiter,
                        take_ready(&mut self.inner),
                        request,
                        H::stamp(limiter, TokensLeft::none()),
                        engaged.refund_shed,
                    ),
                    Err(error) => ResponseFuture::failed(H::reject(error, limiter)),
                }
            }
        }
    }
}

/// Calls `inner` with an admitted request. With `refund` (the limiter, bucket and weight),
/// the tokens go back if a stage below refused the request at once (see [`refusal`]);
/// that check after the call makes the compiler build the inner future in a temporary and
/// copy it, so a stage without `refund_shed` skips it.
#[inline(always)]
fn call_admitted<S, Req, H>(
    inner: &mut S,
    request: Req,
    stamp: H::Stamp,
    refund: Option<(&RateLimiter, Option<u64>, u32)>,
) -> ResponseFuture<S, Req, H>
where
    S: Service<Req>,
    H: RateHeaders<S::Response>,
{
    let Some((limiter, bucket, weight)) = refund else {
        return ResponseFuture::called(inner.call(request), stamp);
    };
    let mark = refusal::Mark::now();
    let response = ResponseFuture::called(inner.call(request), stamp);
    if mark.refused_since() {
        limiter.refund(bucket, weight);
    }
    response
}
