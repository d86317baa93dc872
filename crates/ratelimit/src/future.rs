//! [`ResponseFuture`]: calls the inner service at once, or after waiting in the queue.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::error::Error;
use crate::limiter::{Turn, Waiter};
use crate::BoxError;

/// Gives tokens back if an admitted request is dropped before it reaches the inner service.
struct Permit {
    waiter_bucket: Option<u64>,
    weight: u32,
    limiter: crate::RateLimiter,
    armed: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.armed {
            self.limiter.refund(self.waiter_bucket, self.weight);
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Called { #[pin] future: S::Future },
        Waiting {
            waiter: Option<Waiter>,
            #[pin] sleep: Sleep,
            service: Option<S>,
            request: Option<Req>,
        },
        Admitted {
            permit: Option<Permit>,
            service: Option<S>,
            request: Option<Req>,
        },
        Failed { error: Option<Error> },
    }
}

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit).
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Waiting { .. } => "waiting",
            State::Admitted { .. } => "admitted",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn called(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Called { future },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }

    pub(crate) fn waiting(waiter: Waiter, service: S, request: Req) -> Self {
        let sleep = tokio::time::sleep_until(waiter.deadline);
        ResponseFuture {
            state: State::Waiting {
                waiter: Some(waiter),
                sleep,
                service: Some(service),
                request: Some(request),
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Called { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                StateProj::Failed { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error.into()));
                }
                StateProj::Waiting {
                    waiter,
                    mut sleep,
                    service,
                    request,
                } => {
                    let Some(w) = waiter.as_mut() else {
                        unreachable!("a waiting future always has its waiter");
                    };
                    match w.poll_turn(Instant::now(), cx.waker()) {
                        Turn::Done(Ok(())) => {
                            let w = waiter.take().expect("checked above");
                            let permit = Permit {
                                waiter_bucket: w.bucket,
                                weight: w.weight,
                                limiter: w.limiter().clone(),
                                armed: true,
                            };
                            let (service, request) = (service.take(), request.take());
                            state.set(State::Admitted {
                                permit: Some(permit),
                                service,
                                request,
                            });
                        }
                        Turn::Done(Err(error)) => {
                            waiter.take();
                            state.set(State::Failed { error: Some(error) });
                        }
                        Turn::SleepUntil(at) => {
                            if sleep.deadline() != at {
                                sleep.as_mut().reset(at);
                            }
                            ready!(sleep.as_mut().poll(cx));
                        }
                    }
                }
                StateProj::Admitted {
                    permit,
                    service,
                    request,
                } => {
                    let svc = service.as_mut().expect("polled after completion");
                    if let Err(error) = ready!(svc.poll_ready(cx)) {
                        return Poll::Ready(Err(error.into()));
                    }
                    if let Some(mut permit) = permit.take() {
                        permit.armed = false;
                    }
                    let request = request.take().expect("polled after completion");
                    let future = svc.call(request);
                    state.set(State::Called { future });
                }
            }
        }
    }
}
