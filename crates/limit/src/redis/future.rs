//! [`ResponseFuture`]: waits for Redis's decision, then calls the inner service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_prism_core::internal::ReadyCall;
use tower_prism_core::BoxError;
use tower_service::Service;

use crate::error::Error;

/// The decision in flight (a script round trip, or the failure policy).
pub(super) type Decision = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'static>>;

pin_project! {
    /// The response future of [`RedisRateLimit`](super::RedisRateLimit): the decision,
    /// then the inner call on the clone of the service that was ready.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        decision: Option<Decision>,
        #[pin]
        call: ReadyCall<S, Req>,
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(super) fn new(decision: Decision, service: S, request: Req) -> Self {
        ResponseFuture {
            decision: Some(decision),
            call: ReadyCall::new(service, request),
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.decision.is_some() {
            "deciding"
        } else {
            "admitted"
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(decision) = this.decision.as_mut() {
            ready!(decision.as_mut().poll(cx))?;
            *this.decision = None;
        }
        this.call.poll(cx).map_err(Into::into)
    }
}
