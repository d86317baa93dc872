//! [`ResponseFuture`]: holds a permit while the inner call runs, or waits for one first.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_prism_core::internal::{attempt, received, ReadyCall};
use tower_prism_core::{BoxError, Classify, Outcome};
use tower_service::Service;

use super::limiter::Permit;
use crate::error::Error;

/// The boxed wait for a permit (only built when a request has to wait).
pub(crate) type WaitForPermit =
    Pin<Box<dyn Future<Output = Result<Permit, Error>> + Send + 'static>>;

pin_project! {
    /// A request waiting for a permit, then driving a clone of the service to readiness and
    /// calling it. Boxed (waiting is the cold path), so that the response future of an
    /// admitted call stays small.
    struct Pending<S, Req, C>
    where
        S: Service<Req>,
    {
        // Set while waiting for a permit.
        wait: Option<WaitForPermit>,
        // When the request started waiting: a deadline its caller sent counts from then.
        received: Instant,
        // Set once the permit came; its clock restarts when the call is made.
        permit: Option<Permit>,
        called: bool,
        #[pin]
        call: ReadyCall<S, Req>,
        classify: C,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, C>
    where
        S: Service<Req>,
    {
        Called {
            #[pin]
            future: S::Future,
            permit: Option<Permit>,
            classify: C,
        },
        Pending { pending: Pin<Box<Pending<S, Req, C>>> },
        Failed { error: Option<Error> },
        // A pass-through stage's call: no permit, no classification, only forwarding.
        PassThrough { #[pin] future: S::Future },
    }
}

pin_project! {
    /// The response future of [`ConcurrencyLimit`](super::ConcurrencyLimit). Dropping it
    /// gives its permit back.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, C>,
    }
}

impl<S: Service<Req>, Req, C> fmt::Debug for ResponseFuture<S, Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Pending { pending } if pending.wait.is_some() => "waiting",
            State::Pending { .. } => "admitted",
            State::Failed { .. } => "failed",
            State::PassThrough { .. } => "pass_through",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S: Service<Req>, Req, C> ResponseFuture<S, Req, C> {
    pub(crate) fn called(future: S::Future, permit: Permit, classify: C) -> Self {
        ResponseFuture {
            state: State::Called {
                future,
                permit: Some(permit),
                classify,
            },
        }
    }

    pub(crate) fn pass_through(future: S::Future) -> Self {
        ResponseFuture {
            state: State::PassThrough { future },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }

    pub(crate) fn waiting(wait: WaitForPermit, service: S, request: Req, classify: C) -> Self {
        ResponseFuture {
            state: State::Pending {
                pending: Box::pin(Pending {
                    wait: Some(wait),
                    received: Instant::now(),
                    permit: None,
                    called: false,
                    call: ReadyCall::new(service, request),
                    classify,
                }),
            },
        }
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        // A pass-through stage's poll inlines into its caller's: the response is moved
        // once, not once more by a call of its own.
        if let StateProj::PassThrough { future } = state.as_mut().project() {
            return future.poll(cx).map_err(Into::into);
        }
        poll_engaged(state, cx)
    }
}

/// The poll of an engaged stage's call (see [`ResponseFuture::poll`]).
#[inline(never)]
fn poll_engaged<S, Req, C>(
    mut state: Pin<&mut State<S, Req, C>>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, BoxError>>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    loop {
        match state.as_mut().project() {
            StateProj::Called {
                future,
                permit,
                classify,
            } => {
                let mark = attempt::Mark::now();
                let polled = future.poll(cx);
                if let (Some(event), Some(permit)) = (mark.event_since(), permit.as_mut()) {
                    heard(permit, event);
                }
                let result = ready!(polled);
                if let Some(permit) = permit.take() {
                    finish(permit, classify, result.as_ref());
                }
                return Poll::Ready(result.map_err(Into::into));
            }
            StateProj::PassThrough { future } => {
                return future.poll(cx).map_err(Into::into);
            }
            StateProj::Failed { error } => {
                let error = error.take().expect("polled after completion");
                return Poll::Ready(Err(error.into()));
            }
            StateProj::Pending { pending } => {
                let mut p = pending.as_mut().project();
                if let Some(wait) = p.wait.as_mut() {
                    match ready!(wait.as_mut().poll(cx)) {
                        Ok(permit) => {
                            *p.wait = None;
                            *p.permit = Some(permit);
                        }
                        Err(error) => state.set(State::Failed { error: Some(error) }),
                    }
                    continue;
                }
                if !*p.called {
                    // This poll may make the call (once the service is ready) and complete
                    // it too: its latency counts from the poll's start, not its end.
                    if let Some(permit) = p.permit.as_mut() {
                        permit.restart_clock();
                    }
                }
                let mark = attempt::Mark::now();
                let polled = received::scope(*p.received, || p.call.as_mut().poll(cx));
                let event = mark.event_since();
                if !*p.called && matches!(*p.call, ReadyCall::Called { .. }) {
                    *p.called = true;
                }
                if let (Some(event), Some(permit)) = (event, p.permit.as_mut()) {
                    heard(permit, event);
                }
                let result = ready!(polled);
                let permit = p.permit.take();
                if !*p.called {
                    // The service failed to become ready: dropping the permit gives the
                    // slot back, with no sample.
                    return Poll::Ready(result.map_err(Into::into));
                }
                if let Some(permit) = permit {
                    finish(permit, p.classify, result.as_ref());
                }
                return Poll::Ready(result.map_err(Into::into));
            }
        }
    }
}

/// What a retry below did during a poll (see `internal::attempt`). A retry sent restarts
/// the clock: the sample is the latency of the attempt that answers. An attempt refused
/// with word of when to come back, which the retry now waits out (the service's
/// `Retry-After`, or the hint of a stage between, such as a balancer with no healthy
/// endpoint), lowers the limit at once: the calls are not getting through.
fn heard(permit: &mut Permit, event: attempt::Event) {
    match event {
        attempt::Event::Restarted => permit.restart_clock(),
        attempt::Event::Parked(Some(_)) => permit.report_shed(),
        attempt::Event::Parked(None) => {}
    }
}

/// Feeds the call's outcome to the limit; a failure carrying the service's `Retry-After`
/// (it shed the call) is a drop rather than a latency sample.
fn finish<T, E, C: Classify<T, E>>(permit: Permit, classify: &C, result: Result<&T, &E>) {
    let outcome = classify.classify(result);
    if outcome.is_failure() && outcome != Outcome::Fatal && classify.retry_after(result).is_some() {
        permit.report_shed();
    } else {
        permit.finish(outcome);
    }
}
