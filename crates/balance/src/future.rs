//! The balancer's response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::BoxError;
use tower_prism_core::Classify;
use tower_service::Service;

use crate::endpoint::EndpointState;
use crate::error::Error;

/// Counts a request in flight on an endpoint until the future completes or is dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    endpoint: Arc<EndpointState>,
    started: Instant,
    /// [`complete`](Self::complete) took the call out of the count.
    completed: bool,
}

impl InFlight {
    pub(crate) fn new(endpoint: Arc<EndpointState>, started: Instant) -> Self {
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
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.completed {
            self.endpoint.finish();
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
        Waiting { service: S, request: Option<Req> },
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
            state: State::Called { future },
            guard: Some(guard),
            classify,
        }
    }

    pub(crate) fn waiting(service: S, request: Req, guard: InFlight, classify: C) -> Self {
        ResponseFuture {
            state: State::Waiting {
                service,
                request: Some(request),
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx));
                    if let Some(guard) = this.guard.take() {
                        let outcome = this.classify.classify(result.as_ref());
                        guard.complete(outcome);
                    }
                    return Poll::Ready(result.map_err(Into::into));
                }
                StateProj::Waiting { service, request } => match ready!(service.poll_ready(cx)) {
                    Ok(()) => {
                        let Some(request) = request.take() else {
                            return Poll::Ready(Err("polled after completion".into()));
                        };
                        let future = service.call(request);
                        this.state.set(State::Called { future });
                    }
                    Err(e) => {
                        if let Some(guard) = this.guard.take() {
                            guard.endpoint.record_broken();
                        }
                        return Poll::Ready(Err(e.into()));
                    }
                },
                StateProj::Failed { error } => {
                    let error = error
                        .take()
                        .map_or_else(|| BoxError::from("polled after completion"), Into::into);
                    return Poll::Ready(Err(error));
                }
            }
        }
    }
}

impl<S: Service<Req>, Req, C> std::fmt::Debug for ResponseFuture<S, Req, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
