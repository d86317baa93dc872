//! [`Fallback`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_prism_core::BoxError;
use tower_service::Service;

use super::answer::Answer;
use super::future::ResponseFuture;
use super::handle::FallbackHandle;
use super::http_answer::HttpAnswer;
use super::layer::Stage;

/// Answers the errors of `S` whose kind the stage handles with `A`; passes the others on.
/// Made by [`FallbackLayer`](super::FallbackLayer); clones share its
/// [`FallbackHandle`].
///
/// Only errors of the response future are answered. `poll_ready` reports the inner
/// service's readiness, and its error, as they are: there is no request yet to answer
/// (tower-prism's own stages never reject from `poll_ready`). A response is never an
/// error here, whatever its status: an HTTP 5xx from the inner service passes through.
///
/// A successful call costs one pointer clone (an atomic increment) and no allocation.
pub struct Fallback<S, A = HttpAnswer> {
    pub(crate) inner: S,
    pub(crate) stage: Arc<Stage<A>>,
}

impl<S, A> Fallback<S, A> {
    /// The fallback stage's shared state: name, config, snapshot, reconfigure.
    pub fn handle(&self) -> &FallbackHandle {
        &self.stage.handle
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, A> Clone for Fallback<S, A> {
    fn clone(&self) -> Self {
        Fallback {
            inner: self.inner.clone(),
            stage: self.stage.clone(),
        }
    }
}

impl<S: fmt::Debug, A> fmt::Debug for Fallback<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("handle", &self.stage.handle)
            .finish_non_exhaustive()
    }
}

impl<S, A, Req> Service<Req> for Fallback<S, A>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    A: Answer<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, A, A::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(self.inner.call(req), self.stage.clone())
    }
}
