//! [`ResponseFuture`] of the [`Fault`](crate::Fault) service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_prism_core::internal::ReadyCall;
use tower_prism_core::BoxError;
use tower_service::Service;

use crate::error::Error;

/// What a call gets instead of the service's answer.
pub(crate) enum Injected<Res> {
    Error(Error),
    Response(Res),
}

impl<Res> Injected<Res> {
    fn into_result(self) -> Result<Res, BoxError> {
        match self {
            Injected::Error(error) => Err(Box::new(error)),
            Injected::Response(response) => Ok(response),
        }
    }
}

pin_project! {
    /// The response future of [`Fault`](crate::Fault): the inner call, untouched; or a
    /// delay and then the inner call; or an injected answer, maybe after a delay. A call
    /// let through allocates nothing; a delayed one allocates its timer.
    ///
    /// Dropping a delayed future before its delay is over drops the request and the
    /// service clone it holds: the service is never called.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Called {
            #[pin]
            future: S::Future,
        },
        // The delays are boxed: a tokio `Sleep` is 112 bytes, which every call's future
        // (and every stage's above it) would carry, and copy, for a delay that is rarely
        // drawn; the allocation is made only for a call that is about to wait anyway.
        Delayed {
            // `None` once slept.
            sleep: Option<Pin<Box<Sleep>>>,
            #[pin]
            call: ReadyCall<S, Req>,
        },
        DelayedFault {
            sleep: Pin<Box<Sleep>>,
            fault: Option<Injected<S::Response>>,
        },
        Fault {
            fault: Option<Injected<S::Response>>,
        },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn called(future: S::Future) -> Self {
        ResponseFuture {
            kind: Kind::Called { future },
        }
    }

    /// Calls `service` (ready, or made ready again) with `request` after `sleep`.
    pub(crate) fn delayed(sleep: Sleep, service: S, request: Req) -> Self {
        ResponseFuture {
            kind: Kind::Delayed {
                sleep: Some(Box::pin(sleep)),
                call: ReadyCall::new(service, request),
            },
        }
    }

    /// Answers `fault`, after `sleep` if given.
    pub(crate) fn injected(sleep: Option<Sleep>, fault: Injected<S::Response>) -> Self {
        let kind = match sleep {
            Some(sleep) => Kind::DelayedFault {
                sleep: Box::pin(sleep),
                fault: Some(fault),
            },
            None => Kind::Fault { fault: Some(fault) },
        };
        ResponseFuture { kind }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future } => future.poll(cx).map_err(Into::into),
            KindProj::Delayed { sleep, call } => {
                if let Some(delay) = sleep {
                    ready!(delay.as_mut().poll(cx));
                    *sleep = None;
                }
                call.poll(cx).map_err(Into::into)
            }
            KindProj::DelayedFault { sleep, fault } => {
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(take(fault))
            }
            KindProj::Fault { fault } => Poll::Ready(take(fault)),
        }
    }
}

/// The injected answer, once; a future polled again after it completed fails.
fn take<Res>(fault: &mut Option<Injected<Res>>) -> Result<Res, BoxError> {
    fault
        .take()
        .unwrap_or(Injected::Error(Error::Injected))
        .into_result()
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match &self.kind {
            Kind::Called { .. } => "ResponseFuture::Called",
            Kind::Delayed { .. } => "ResponseFuture::Delayed",
            Kind::DelayedFault { .. } => "ResponseFuture::DelayedFault",
            Kind::Fault { .. } => "ResponseFuture::Fault",
        })
    }
}
