//! [`ConcurrencyLimit`]: the adaptive concurrency-limiting service.

use std::task::{Context, Poll};

use tower_prism_core::{Classify, DefaultClassifier};
use tower_service::Service;

use tower_prism_core::BoxError;

use super::future::ResponseFuture;
use super::limiter::ConcurrencyLimiter;
use crate::error::Error;
use crate::ready::take_ready;

/// Caps the requests in flight to `S` at the limiter's adaptive limit. Clones share the
/// limiter.
///
/// A request over the limit fails from its response future with
/// [`Error::ConcurrencyLimited`], or, with `max_wait` set, waits up to that long for a
/// permit ([`Error::ConcurrencyTimeout`] after). `poll_ready` only asks the inner service.
/// Each call's result is classified by `C` to move the limit.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S, C = DefaultClassifier> {
    inner: S,
    limiter: ConcurrencyLimiter,
    classify: C,
}

impl<S> ConcurrencyLimit<S> {
    /// Wraps `inner` with `limiter`, classifying results with [`DefaultClassifier`].
    pub fn new(inner: S, limiter: ConcurrencyLimiter) -> Self {
        ConcurrencyLimit {
            inner,
            limiter,
            classify: DefaultClassifier,
        }
    }
}

impl<S, C> ConcurrencyLimit<S, C> {
    pub(crate) fn with_classify(inner: S, limiter: ConcurrencyLimiter, classify: C) -> Self {
        ConcurrencyLimit {
            inner,
            limiter,
            classify,
        }
    }

    /// The shared limiter (for snapshots and reconfiguration).
    pub fn handle(&self) -> &ConcurrencyLimiter {
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

    fn call(&mut self, request: Req) -> Self::Future {
        match self.limiter.acquire_now() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(request), permit, self.classify.clone())
            }
            Err(limit) if self.limiter.max_wait().is_some() => {
                let limiter = self.limiter.clone();
                let wait = Box::pin(async move { limiter.wait(limit).await });
                let service = take_ready(&mut self.inner);
                ResponseFuture::waiting(wait, service, request, self.classify.clone())
            }
            Err(limit) => {
                ResponseFuture::failed(self.limiter.reject(Error::ConcurrencyLimited { limit }))
            }
        }
    }
}
