//! [`ResponseFuture`] of the [`Retry`](crate::Retry) service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_prism_core::{BoxError, Classify};
use tower_service::Service;

use crate::attempts::Attempts;
use crate::hint::ResponseHint;
use crate::replay::ReplayRequest;

pin_project! {
    /// The response future of [`Retry`](crate::Retry). Dropping it cancels the attempts in
    /// flight (hedges included) or the backoff and makes no further attempt; a retry or
    /// hedge the budget granted but that was never sent is given back to the budget.
    ///
    /// Of a [pass-through](crate::Retry::pass_through) stage: the inner call alone, its
    /// error boxed as an engaged stage boxes an error it does not retry.
    pub struct ResponseFuture<S, Req, C, R, H>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<Attempts<S, Req, C, R, H>, S::Future>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<A, F> {
        Engaged { #[pin] attempts: A },
        PassThrough { #[pin] future: F },
    }
}

impl<S, Req, C, R, H> ResponseFuture<S, Req, C, R, H>
where
    S: Service<Req>,
{
    #[inline]
    pub(crate) fn engaged(attempts: Attempts<S, Req, C, R, H>) -> Self {
        ResponseFuture {
            kind: Kind::Engaged { attempts },
        }
    }

    #[inline]
    pub(crate) fn pass_through(future: S::Future) -> Self {
        ResponseFuture {
            kind: Kind::PassThrough { future },
        }
    }
}

impl<S, Req, C, R, H> Future for ResponseFuture<S, Req, C, R, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError>,
    R: ReplayRequest<Req>,
    H: ResponseHint<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Engaged { attempts } => attempts.poll(cx),
            KindProj::PassThrough { future } => future.poll(cx).map_err(Into::into),
        }
    }
}

impl<S, Req, C, R, H> std::fmt::Debug for ResponseFuture<S, Req, C, R, H>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Engaged { attempts } => attempts.fmt(f),
            Kind::PassThrough { .. } => f
                .debug_struct("ResponseFuture")
                .field("pass_through", &true)
                .finish(),
        }
    }
}
