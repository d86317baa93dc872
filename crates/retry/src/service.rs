//! [`Retry`]: the service.

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_prism_core::{Classify, DefaultClassifier};
use tower_service::Service;

use crate::error::BoxError;
use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::policy::{CloneRequest, NoHint, ReplayRequest, ResponseHint};

/// Retries failed calls to `S`. Made by [`RetryLayer`](crate::RetryLayer); clones share
/// the layer's budget and settings.
///
/// `poll_ready` is the inner service's; a retry drives a clone of the inner service to
/// readiness inside the response future. The first attempt is sent from `call`, so a call
/// that succeeds at once costs a request copy, a few atomic operations and no allocation.
#[derive(Debug, Clone)]
pub struct Retry<S, C = DefaultClassifier, R = CloneRequest, H = NoHint> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) classify: C,
    pub(crate) replay: R,
    pub(crate) hint: H,
}

impl<S, C, R, H> Retry<S, C, R, H> {
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

impl<S, Req, C, R, H> Service<Req> for Retry<S, C, R, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
    R: ReplayRequest<Req> + Clone,
    H: ResponseHint<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, R, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let settings = self.shared.settings.load();
        let started = Instant::now();
        if self.shared.budget.is_enabled() {
            self.shared.budget.deposit();
        }
        let backup = if settings.max_attempts > 1 {
            self.replay.replay(&req)
        } else {
            None
        };
        let future = self.inner.call(req);
        ResponseFuture::new(
            future,
            self.inner.clone(),
            backup,
            self.shared.clone(),
            settings,
            started,
            self.classify.clone(),
            self.replay.clone(),
            self.hint.clone(),
        )
    }
}
