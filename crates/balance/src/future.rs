//! The balancer's response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

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

    /// Ends a call the endpoint never took (its readiness failed): nothing about its
    /// latency is known.
    pub(crate) fn end_unsent(mut self) {
        self.completed = true;
        self.endpoint.finish();
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
        /// No endpoint could take the request.
        Failed { error: Option<Error> },
    }
}

pin_project! {
    /// The future of a balanced call: the chosen endpoint's response (or error, boxed), with
    /// its latency and outcome recorded for the endpoint. When the request could only go to
    /// an endpoint that was not yet ready (consistent hashing, or `call` without `poll_ready`),
    /// it waits for that endpoint's readiness first.
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
        let this = self.project();
        match this.state.project() {
            StateProj::Call { mut call } => {
                let result = ready!(call.as_mut().poll(cx));
                // still waiting: the error came from the endpoint's `poll_ready`
                let not_ready = matches!(call.as_ref().get_ref(), ReadyCall::Waiting { .. });
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

impl<S: Service<Req>, Req, C> std::fmt::Debug for ResponseFuture<S, Req, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
