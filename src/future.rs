//! [`ResponseFuture`]: the response future of [`Reliability`](crate::Reliability).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_prism_core::BoxError;

use crate::profile::{Generic, Profile};
use crate::stack::Stacked;

pin_project! {
    /// The response future of [`Reliability`](crate::Reliability): a call through every
    /// configured stage.
    pub struct ResponseFuture<S, Req, P = Generic>
    where
        P: Profile,
        S: Stacked<P, Req>,
    {
        #[pin]
        inner: S::Future,
    }
}

impl<S, Req, P> ResponseFuture<S, Req, P>
where
    P: Profile,
    S: Stacked<P, Req>,
{
    pub(crate) fn new(inner: S::Future) -> Self {
        ResponseFuture { inner }
    }
}

impl<S, Req, P> Future for ResponseFuture<S, Req, P>
where
    P: Profile,
    S: Stacked<P, Req>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<S, Req, P> fmt::Debug for ResponseFuture<S, Req, P>
where
    P: Profile,
    S: Stacked<P, Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
