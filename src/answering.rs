//! What [`HttpErrors`](crate::HttpErrors) and [`GrpcErrors`](crate::GrpcErrors) share: a
//! service whose errors, from `poll_ready` or from the call, come out of its future as an
//! [`Error`] for the protocol's wrapper to answer with a response.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_prism_core::BoxError;
use tower_service::Service;

use crate::error::Error;

/// The inner service and the error of a `poll_ready` that failed: the next call answers
/// with it instead of calling the service.
#[derive(Debug)]
pub(crate) struct Answering<S> {
    inner: S,
    failed: Option<Error>,
}

impl<S: Clone> Clone for Answering<S> {
    fn clone(&self) -> Self {
        // A clone has not seen the failed readiness: it asks the service again.
        Answering::new(self.inner.clone())
    }
}

impl<S> Answering<S> {
    pub(crate) fn new(inner: S) -> Self {
        Answering {
            inner,
            failed: None,
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// Always ready: a failed readiness is kept for the next call to answer, until a later
    /// readiness succeeds (the next call then goes to the service).
    pub(crate) fn poll_ready<Req>(&mut self, cx: &mut Context<'_>) -> Poll<()>
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        match ready!(self.inner.poll_ready(cx)) {
            Ok(()) if self.failed.is_some() => self.forget_failure(),
            Ok(()) => {}
            Err(error) => self.failed = Some(Error::from_box(error.into())),
        }
        Poll::Ready(())
    }

    #[cold]
    #[inline(never)]
    fn forget_failure(&mut self) {
        self.failed = None;
    }

    #[inline]
    pub(crate) fn call<Req>(&mut self, req: Req) -> AnsweringFuture<S::Future>
    where
        S: Service<Req>,
    {
        let state = match self.failed.take() {
            None => State::Called {
                future: self.inner.call(req),
            },
            Some(error) => State::Failed { error: Some(error) },
        };
        AnsweringFuture { state }
    }
}

pin_project! {
    /// The inner call, or the error a failed readiness left for it.
    pub(crate) struct AnsweringFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] future: F },
        Failed { error: Option<Error> },
    }
}

impl<F> AnsweringFuture<F> {
    /// Polls the call: its response, or `answer`'s for its error (a failed readiness's,
    /// or the call's). The response comes out as it is, not re-wrapped in a `Result` for
    /// the protocol's wrapper to unwrap: each re-wrapping moved the response once more.
    #[inline]
    pub(crate) fn poll_answer<T, E>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        answer: impl FnOnce(Error) -> T,
    ) -> Poll<T>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<BoxError>,
    {
        let error = match self.project().state.project() {
            StateProj::Called { future } => match ready!(future.poll(cx)) {
                Ok(response) => return Poll::Ready(response),
                Err(error) => Error::from_box(error.into()),
            },
            StateProj::Failed { error } => error
                .take()
                .unwrap_or_else(|| Error::from_box("polled after completion".into())),
        };
        Poll::Ready(answer(error))
    }
}
