//! The balancer's response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tower_prism_core::internal::ReadyCall;
use tower_prism_core::BoxError;
use tower_prism_core::Classify;
use tower_prism_core::Moment;
use tower_service::Service;

use crate::endpoint::EndpointState;
use crate::error::Error;

/// Counts a request in flight on an endpoint until the future completes or is dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    endpoint: Arc<EndpointState>,
    started: Moment,
    /// [`complete`](Self::complete) took the call out of the count.
    completed: bool,
}

impl InFlight {
    pub(crate) fn new(endpoint: Arc<EndpointState>, started: Moment) -> Self {
        endpoint.start();
        InFlight {
            endpoint,
            started,
            completed: false,
        }
    }

    /// Ends the call with its outcome recorded.
    pub(crate) fn complete(mut self, outcome: tower_prism_core::Outcome) {
        self.completed = true;
        self.endpoint.complete(outcome, self.started);
    }

    /// Ends a call the endpoint never took (its readiness failed, or it left the rotation
    /// first): nothing about its latency is known.
    pub(crate) fn end_unsent(mut self) {
        self.completed = true;
        self.endpoint.finish();
    }

    /// Whether the endpoint a call waits on (for its readiness) has left the rotation:
    /// removed, ejected or failing its health checks (and the balancer is not in panic
    /// mode), so that no new call would go to it. Parks `waker` with the balancer first,
    /// so that a removal or a failed health check after this look wakes the call.
    #[cold]
    fn left_rotation(&self, waker: &Waker) -> bool {
        let endpoint = &self.endpoint;
        endpoint.policy.register(waker);
        endpoint.outlier.is_removed() || !endpoint.usable()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.completed {
            self.endpoint.abandon(self.started);
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        /// Waiting for the endpoint's readiness (when it was not ready at `call`), then
        /// its response.
        Call { #[pin] call: ReadyCall<S, Req> },
        /// No endpoint could take the request (or its endpoint left the rotation while it
        /// waited for the endpoint's readiness).
        Failed { error: Option<Error> },
    }
}

pin_project! {
    /// The future of a balanced call: the chosen endpoint's response (or error, boxed), with
    /// its latency and outcome recorded for the endpoint. When the request could only go to
    /// an endpoint that was not yet ready (consistent hashing, or `call` without `poll_ready`),
    /// it waits for that endpoint's readiness first, for as long as the endpoint stays in
    /// rotation: one removed, ejected or failing its health checks meanwhile fails the call
    /// with [`Error::NoHealthyEndpoint`].
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        guard: Option<InFlight>,
        classify: C,
    }
}

impl<S: Service<Req>, Req, C> ResponseFuture<S, Req, C> {
    pub(crate) fn called(future: S::Future, guard: InFlight, classify: C) -> Self {
        ResponseFuture {
            state: State::Call {
                call: ReadyCall::Called { future },
            },
            guard: Some(guard),
            classify,
        }
    }

    pub(crate) fn waiting(service: S, request: Req, guard: InFlight, classify: C) -> Self {
        ResponseFuture {
            state: State::Call {
                call: ReadyCall::new(service, request),
            },
            guard: Some(guard),
            classify,
        }
    }

    pub(crate) fn failed(error: Error, classify: C) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            guard: None,
            classify,
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.state.as_mut().project() {
            StateProj::Call { mut call } => {
                let polled = call.as_mut().poll(cx);
                // still waiting: the endpoint is not ready yet, or its `poll_ready` failed
                let not_ready = matches!(call.as_ref().get_ref(), ReadyCall::Waiting { .. });
                let Poll::Ready(result) = polled else {
                    // A call pinned to an endpoint (its key's, or one taken by a `call` made
                    // without `poll_ready`) would wait on it for ever once it is gone, or out
                    // of rotation and not getting ready (a connection that never completes).
                    if not_ready
                        && this
                            .guard
                            .as_ref()
                            .is_some_and(|guard| guard.left_rotation(cx.waker()))
                    {
                        return Poll::Ready(Err(refuse_unsent(this.guard, this.state)));
                    }
                    return Poll::Pending;
                };
                if let Some(guard) = this.guard.take() {
                    if not_ready {
                        guard.endpoint.record_broken();
                        guard.end_unsent();
                    } else {
                        let outcome = this.classify.classify(result.as_ref());
                        guard.complete(outcome);
                    }
                }
                Poll::Ready(result.map_err(Into::into))
            }
            StateProj::Failed { error } => {
                let error = error
                    .take()
                    .map_or_else(|| BoxError::from("polled after completion"), Into::into);
                Poll::Ready(Err(error))
            }
        }
    }
}

/// Refuses a call whose endpoint left the rotation while the call waited for its readiness:
/// the call ends unsent (nothing is recorded against the endpoint, which never had it), and
/// its request and service clone are dropped now. The caller (a retry above) may send it
/// again: a new pick goes to an endpoint in rotation.
#[cold]
#[inline(never)]
fn refuse_unsent<S: Service<Req>, Req>(
    guard: &mut Option<InFlight>,
    mut state: Pin<&mut State<S, Req>>,
) -> BoxError {
    let endpoints = guard.take().map_or(0, |guard| {
        let endpoints = guard.endpoint.policy.endpoints.load(Ordering::Relaxed);
        tracing::debug!(balancer = %guard.endpoint.policy.name, endpoint = %guard.endpoint.label, "endpoint left the rotation while a call waited for it");
        guard.end_unsent();
        endpoints
    });
    state.set(State::Failed { error: None });
    Error::NoHealthyEndpoint { endpoints }.into()
}

impl<S: Service<Req>, Req, C> std::fmt::Debug for ResponseFuture<S, Req, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
