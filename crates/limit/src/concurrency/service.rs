//! [`ConcurrencyLimit`]: the adaptive concurrency-limiting service.

use std::fmt;
use std::task::{Context, Poll};

use tower_prism_core::internal::refusal;
use tower_prism_core::{Classify, DefaultClassifier};
use tower_service::Service;

use tower_prism_core::BoxError;

use super::future::ResponseFuture;
use super::limiter::ConcurrencyLimiter;
use tower_prism_core::internal::take_ready;

/// Caps the requests in flight to `S` at the limiter's adaptive limit. Clones share the
/// limiter.
///
/// A request over the limit fails from its response future with
/// [`Error::ConcurrencyLimited`](crate::Error::ConcurrencyLimited), or, with `max_wait`
/// set, waits up to that long for a permit
/// ([`Error::ConcurrencyTimeout`](crate::Error::ConcurrencyTimeout) after; at once
/// `ConcurrencyLimited` while `max_waiters` requests wait). `poll_ready` only asks the inner service.
/// Each call's result is classified by `C` to move the limit. A
/// [`pass_through`](ConcurrencyLimit::pass_through) service has no limiter and forwards
/// every call.
#[derive(Clone)]
pub struct ConcurrencyLimit<S, C = DefaultClassifier> {
    inner: S,
    // `None` in pass-through mode: the limiter and the classifier are only needed by a
    // limited call, so a switched-off stage is one branch and needs no classifier value.
    engaged: Option<Engaged<C>>,
}

/// The limiter and the classifier of an engaged [`ConcurrencyLimit`].
#[derive(Debug, Clone)]
struct Engaged<C> {
    limiter: ConcurrencyLimiter,
    classify: C,
}

impl<S> ConcurrencyLimit<S> {
    /// Wraps `inner` with `limiter`, classifying results with [`DefaultClassifier`].
    pub fn new(inner: S, limiter: ConcurrencyLimiter) -> Self {
        Self::with_classify(inner, limiter, DefaultClassifier)
    }
}

impl<S, C> ConcurrencyLimit<S, C> {
    pub(crate) fn with_classify(inner: S, limiter: ConcurrencyLimiter, classify: C) -> Self {
        ConcurrencyLimit {
            inner,
            engaged: Some(Engaged { limiter, classify }),
        }
    }

    /// A concurrency limit that is switched off: `poll_ready` and `call` go straight to
    /// `inner` (its error boxed into a [`BoxError`], as the engaged stage does), with no
    /// clock read, no atomic, no metric, no classification and no allocation: one branch
    /// per call.
    ///
    /// Unlike `ServiceBuilder::option_layer` (an `Either`), the type is the same as the
    /// engaged stage's, so a stack of optional stages stays one linear type.
    pub fn pass_through(inner: S) -> Self {
        ConcurrencyLimit {
            inner,
            engaged: None,
        }
    }

    /// The shared limiter (for snapshots and reconfiguration); `None` in pass-through mode.
    pub fn handle(&self) -> Option<&ConcurrencyLimiter> {
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

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for ConcurrencyLimit<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ConcurrencyLimit");
        d.field("inner", &self.inner);
        match &self.engaged {
            Some(engaged) => d
                .field("limiter", &engaged.limiter)
                .field("classify", &engaged.classify),
            None => d.field("pass_through", &true),
        };
        d.finish()
    }
}

impl<S, C, Req> Service<Req> for ConcurrencyLimit<S, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        // A pass-through stage's call inlines into its caller's: the request and the inner
        // future are moved once, not once more by a call of its own.
        if self.engaged.is_none() {
            return ResponseFuture::pass_through(self.inner.call(request));
        }
        self.call_engaged(request)
    }
}

impl<S, C> ConcurrencyLimit<S, C> {
    /// The call of an engaged stage (see [`Service::call`]).
    #[inline(never)]
    fn call_engaged<Req>(&mut self, request: Req) -> ResponseFuture<S, Req, C>
    where
        S: Service<Req> + Clone,
        S::Error: Into<BoxError>,
        C: Classify<S::Response, S::Error> + Clone,
    {
        let Some(engaged) = &self.engaged else {
            return ResponseFuture::pass_through(self.inner.call(request));
        };
        match engaged.limiter.acquire_now() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(request), permit, engaged.classify.clone())
            }
            // Queued at once, so that `max_waiters` counts the calls made before any of
            // their futures is polled.
            Err(limit) => match engaged.limiter.queue(limit) {
                Ok(waiter) => {
                    let wait = Box::pin(waiter.wait(limit));
                    let service = take_ready(&mut self.inner);
                    ResponseFuture::waiting(wait, service, request, engaged.classify.clone())
                }
                Err(error) => {
                    refusal::refused();
                    ResponseFuture::failed(error)
                }
            },
        }
    }
}
