//! [`ResponseFuture`]: the response future of [`Reliability`](crate::Reliability).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::BoxError;
use tower_service::Service;

use crate::profile::{Generic, Profile};
use crate::stack::Stack;

pin_project! {
    /// The response future of [`Reliability`](crate::Reliability): a call through every
    /// configured stage.
    pub struct ResponseFuture<S, Req, P = Generic>
    where
        P: Profile,
        Stack<S, P>: Service<Req>,
    {
        #[pin]
        inner: <Stack<S, P> as Service<Req>>::Future,
    }
}

impl<S, Req, P> ResponseFuture<S, Req, P>
where
    P: Profile,
    Stack<S, P>: Service<Req>,
{
    pub(crate) fn new(inner: <Stack<S, P> as Service<Req>>::Future) -> Self {
        ResponseFuture { inner }
    }
}

impl<S, Req, P> Future for ResponseFuture<S, Req, P>
where
    P: Profile,
    Stack<S, P>: Service<Req, Error = BoxError>,
{
    type Output = Result<<Stack<S, P> as Service<Req>>::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<S, Req, P> fmt::Debug for ResponseFuture<S, Req, P>
where
    P: Profile,
    Stack<S, P>: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
