//! [`ResponseFuture`] of the [`Fault`](crate::Fault) service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tokio::time::Sleep;
use tower_prism_core::internal::route::{self, Avoiding};
use tower_prism_core::internal::{received, ReadyCall};
use tower_prism_core::{BoxError, RequestDeadline};
use tower_service::Service;

use crate::error::Error;
use crate::handle::ActiveFault;

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
    /// let through allocates nothing; a delayed call or an injected answer allocates its
    /// state.
    ///
    /// Dropping a delayed future before its delay is over drops the request and the
    /// service clone it holds: the service is never called. A faulted call counts against
    /// `max_active_faults` until its delay is over (a delayed call with no other fault),
    /// its injected answer is returned, or its future is dropped.
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
        // A delayed call and an injected answer are boxed: unboxed, every call's future
        // (and every stage's above it) would carry, and copy, a tokio `Sleep` (112 bytes),
        // the request and the service kept for after the delay, or a whole response
        // (an HTTP request and response are hundreds of bytes), for faults that are
        // rarely drawn. Only a call that is about to wait or be answered allocates.
        Delayed {
            delayed: Pin<Box<Delayed<S, Req>>>,
        },
        Injected {
            answer: Pin<Box<Answer<S::Response>>>,
        },
    }
}

pin_project! {
    /// A call made after a delay.
    struct Delayed<S, Req>
    where
        S: Service<Req>,
    {
        // `None` once slept.
        #[pin]
        sleep: Option<Sleep>,
        #[pin]
        call: ReadyCall<S, Req>,
        scopes: Scopes,
        // `None` once slept: only the delay is a fault.
        active: Option<ActiveFault>,
    }
}

/// What the stages above tell the services below only while they call them (the
/// caller's deadline, when the request was received, the endpoints a retry avoids): a
/// delayed call is made later, in a poll, so it takes them along and calls in them, and a
/// stack below (a client policy, a balancer) sees what it would have seen undelayed.
#[derive(Debug, Clone, Copy)]
struct Scopes {
    deadline: Option<RequestDeadline>,
    received: Option<Instant>,
    avoid: Option<u64>,
}

impl Scopes {
    fn current() -> Self {
        Scopes {
            deadline: RequestDeadline::current(),
            received: received::get(),
            avoid: route::avoided(),
        }
    }

    /// Runs `f` inside the scopes taken at the call.
    fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        let _avoiding = self.avoid.map(Avoiding::start);
        let f = || match self.received {
            Some(at) => received::scope(at, f),
            None => f(),
        };
        match self.deadline {
            Some(deadline) => deadline.scope(f),
            None => f(),
        }
    }
}

pin_project! {
    /// An injected answer, after a delay if there is one.
    struct Answer<Res> {
        #[pin]
        sleep: Option<Sleep>,
        // `None` once answered.
        fault: Option<Injected<Res>>,
        active: Option<ActiveFault>,
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn called(future: S::Future) -> Self {
        ResponseFuture {
            kind: Kind::Called { future },
        }
    }

    /// Calls `service` (ready, or made ready again) with `request` after `sleep`; the
    /// fault is `active` until the sleep is over.
    pub(crate) fn delayed(sleep: Sleep, service: S, request: Req, active: ActiveFault) -> Self {
        ResponseFuture {
            kind: Kind::Delayed {
                delayed: Box::pin(Delayed {
                    sleep: Some(sleep),
                    call: ReadyCall::new(service, request),
                    scopes: Scopes::current(),
                    active: Some(active),
                }),
            },
        }
    }

    /// Answers `fault`, after `sleep` if given; the fault is `active` until then.
    pub(crate) fn injected(
        sleep: Option<Sleep>,
        fault: Injected<S::Response>,
        active: ActiveFault,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Injected {
                answer: Box::pin(Answer {
                    sleep,
                    fault: Some(fault),
                    active: Some(active),
                }),
            },
        }
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
            KindProj::Delayed { delayed } => {
                let mut delayed = delayed.as_mut().project();
                if let Some(sleep) = delayed.sleep.as_mut().as_pin_mut() {
                    ready!(sleep.poll(cx));
                    delayed.sleep.set(None);
                    // The delay was the fault: from here the call is an ordinary one, and
                    // a slow answer must not hold the limit (Envoy's, since
                    // envoyproxy/envoy#14762).
                    *delayed.active = None;
                }
                let call = delayed.call;
                let answer = ready!(delayed.scopes.enter(|| call.poll(cx)));
                Poll::Ready(answer.map_err(Into::into))
            }
            KindProj::Injected { answer } => {
                let mut answer = answer.as_mut().project();
                if let Some(sleep) = answer.sleep.as_mut().as_pin_mut() {
                    ready!(sleep.poll(cx));
                    answer.sleep.set(None);
                }
                *answer.active = None;
                Poll::Ready(take(answer.fault))
            }
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
            Kind::Injected { answer } if answer.sleep.is_some() => "ResponseFuture::DelayedFault",
            Kind::Injected { .. } => "ResponseFuture::Fault",
        })
    }
}
