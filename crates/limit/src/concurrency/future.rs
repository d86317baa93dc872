//! [`ResponseFuture`]: holds a permit while the inner call runs, or waits for one first.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_prism_core::Classify;
use tower_service::Service;

use super::error::ConcurrencyError;
use super::limiter::Permit;
use crate::BoxError;

/// The boxed wait for a permit (only built when a request has to wait).
pub(crate) type WaitForPermit =
    Pin<Box<dyn Future<Output = Result<Permit, ConcurrencyError>> + Send + 'static>>;

/// A request waiting for a permit, then driving a clone of the service to readiness. Boxed
/// (waiting is the cold path), so that the response future of an admitted call stays small.
struct Pending<S, Req, C> {
    // Set while waiting for a permit.
    wait: Option<WaitForPermit>,
    // Set once the permit came, until the request reaches the inner service.
    permit: Option<Permit>,
    service: S,
    request: Option<Req>,
    classifier: Option<C>,
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
            classifier: C,
        },
        Pending { pending: Box<Pending<S, Req, C>> },
        Failed { error: Option<ConcurrencyError> },
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
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S: Service<Req>, Req, C> ResponseFuture<S, Req, C> {
    pub(crate) fn called(future: S::Future, permit: Permit, classifier: C) -> Self {
        ResponseFuture {
            state: State::Called {
                future,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) fn failed(error: ConcurrencyError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }

    pub(crate) fn waiting(wait: WaitForPermit, service: S, request: Req, classifier: C) -> Self {
        ResponseFuture {
            state: State::Pending {
                pending: Box::new(Pending {
                    wait: Some(wait),
                    permit: None,
                    service,
                    request: Some(request),
                    classifier: Some(classifier),
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Called {
                    future,
                    permit,
                    classifier,
                } => {
                    let result = ready!(future.poll(cx));
                    if let Some(permit) = permit.take() {
                        permit.finish(classifier.classify(result.as_ref()));
                    }
                    return Poll::Ready(result.map_err(Into::into));
                }
                StateProj::Failed { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error.into()));
                }
                StateProj::Pending { pending } => {
                    let p = &mut **pending;
                    if let Some(wait) = p.wait.as_mut() {
                        match ready!(wait.as_mut().poll(cx)) {
                            Ok(permit) => {
                                p.wait = None;
                                p.permit = Some(permit);
                            }
                            Err(error) => state.set(State::Failed { error: Some(error) }),
                        }
                        continue;
                    }
                    if let Err(error) = ready!(p.service.poll_ready(cx)) {
                        // Dropping the permit on the way out gives the slot back.
                        p.permit.take();
                        return Poll::Ready(Err(error.into()));
                    }
                    let mut permit = p.permit.take().expect("polled after completion");
                    permit.restart();
                    let future = p
                        .service
                        .call(p.request.take().expect("polled after completion"));
                    let classifier = p.classifier.take().expect("polled after completion");
                    state.set(State::Called {
                        future,
                        permit: Some(permit),
                        classifier,
                    });
                }
            }
        }
    }
}
