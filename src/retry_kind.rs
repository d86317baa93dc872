//! [`RetryKind`]: whether a profile's stack has a retry stage at all.
//!
//! A stage left out of a policy passes calls through, but its response future is still in
//! the stack's: the retry's call state (attempts, timers, the request kept to replay) is
//! hundreds of bytes, carried and copied on every call. A server profile can never have a
//! retry stage (it cannot replay what it received), so its stack is built without one.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_prism_core::BoxError;
use tower_service::Service;

use crate::profile::Profile;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Retries {}
    impl Sealed for super::NoRetries {}
}

/// Whether a [`Profile`]'s stack has a retry stage: [`Retries`] (clients) or
/// [`NoRetries`] (servers). Sealed: a profile picks one of the two.
pub trait RetryKind: sealed::Sealed + Send + Sync + 'static {
    /// The retry stage over `S`.
    #[doc(hidden)]
    type Stage<S, P: Profile>;

    /// The retry stage over `inner`: `layer`'s, or passing calls through.
    #[doc(hidden)]
    fn stage<S, P: Profile>(
        layer: Option<&tower_prism_retry::RetryLayer<P::Classify, P::Replay, P::Hint>>,
        inner: S,
    ) -> Self::Stage<S, P>;

    /// The service below the stage.
    #[doc(hidden)]
    fn get_ref<S, P: Profile>(stage: &Self::Stage<S, P>) -> &S;

    /// The service below the stage, mutably.
    #[doc(hidden)]
    fn get_mut<S, P: Profile>(stage: &mut Self::Stage<S, P>) -> &mut S;

    /// The service below the stage, the stage dropped.
    #[doc(hidden)]
    fn into_inner<S, P: Profile>(stage: Self::Stage<S, P>) -> S;
}

/// A stack with a retry stage (engaged when the policy has a `retry` table).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retries;

/// A stack without a retry stage: a profile that cannot replay its requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoRetries;

impl RetryKind for Retries {
    type Stage<S, P: Profile> = tower_prism_retry::Retry<S, P::Classify, P::Replay, P::Hint>;

    fn stage<S, P: Profile>(
        layer: Option<&tower_prism_retry::RetryLayer<P::Classify, P::Replay, P::Hint>>,
        inner: S,
    ) -> Self::Stage<S, P> {
        match layer {
            Some(layer) => layer.layer(inner),
            None => tower_prism_retry::Retry::pass_through(inner),
        }
    }

    fn get_ref<S, P: Profile>(stage: &Self::Stage<S, P>) -> &S {
        stage.get_ref()
    }

    fn get_mut<S, P: Profile>(stage: &mut Self::Stage<S, P>) -> &mut S {
        stage.get_mut()
    }

    fn into_inner<S, P: Profile>(stage: Self::Stage<S, P>) -> S {
        stage.into_inner()
    }
}

impl RetryKind for NoRetries {
    type Stage<S, P: Profile> = NoRetry<S>;

    fn stage<S, P: Profile>(
        layer: Option<&tower_prism_retry::RetryLayer<P::Classify, P::Replay, P::Hint>>,
        inner: S,
    ) -> Self::Stage<S, P> {
        // `Stages::new` refuses a retry table for a profile that cannot retry.
        debug_assert!(layer.is_none(), "a retry stage for a profile without one");
        NoRetry { inner }
    }

    fn get_ref<S, P: Profile>(stage: &Self::Stage<S, P>) -> &S {
        &stage.inner
    }

    fn get_mut<S, P: Profile>(stage: &mut Self::Stage<S, P>) -> &mut S {
        &mut stage.inner
    }

    fn into_inner<S, P: Profile>(stage: Self::Stage<S, P>) -> S {
        stage.inner
    }
}

/// Where a stack without a retry stage has one: the inner service, its errors boxed (as a
/// retry stage boxes an error it does not retry).
#[derive(Clone)]
pub struct NoRetry<S> {
    inner: S,
}

impl<S: fmt::Debug> fmt::Debug for NoRetry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoRetry")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, Req> Service<Req> for NoRetry<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = NoRetryFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        NoRetryFuture {
            future: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`NoRetry`]: the inner one, its error boxed.
    pub struct NoRetryFuture<F> {
        #[pin]
        future: F,
    }
}

impl<F, T, E> Future for NoRetryFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx).map_err(Into::into)
    }
}

impl<F> fmt::Debug for NoRetryFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoRetryFuture").finish_non_exhaustive()
    }
}
