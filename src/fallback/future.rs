//! [`ResponseFuture`] of the [`Fallback`](super::Fallback) service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_prism_core::BoxError;

use super::answer::Answer;
use super::layer::Stage;

pin_project! {
    /// The response future of [`Fallback`](super::Fallback): the inner call, then, if it
    /// failed with an error the stage answers, the answer (`AF`, the future of the
    /// [`Answer`] `A`).
    pub struct ResponseFuture<F, A, AF> {
        #[pin]
        state: State<F, AF>,
        stage: Arc<Stage<A>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, AF> {
        Calling { #[pin] future: F },
        Answering { #[pin] future: AF },
    }
}

impl<F, A, AF> ResponseFuture<F, A, AF> {
    pub(crate) fn new(future: F, stage: Arc<Stage<A>>) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            stage,
        }
    }
}

impl<F, A, AF> fmt::Debug for ResponseFuture<F, A, AF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Calling { .. } => "calling",
            State::Answering { .. } => "answering",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, A, AF, Res, E> Future for ResponseFuture<F, A, AF>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    A: Answer<Res, Future = AF>,
    AF: Future<Output = Result<Res, A::Error>>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let error = match ready!(future.poll(cx)) {
                        Ok(response) => match this.stage.answer.failure(&response) {
                            None => return Poll::Ready(Ok(response)),
                            // A response handled as a failure: answered whatever `on`
                            // lists (the config asked for it by itself).
                            Some(error) => {
                                this.stage.handle.answered_response(&error);
                                error
                            }
                        },
                        Err(error) => match this.stage.handle.decide(error.into()) {
                            Ok(handled) => handled,
                            Err(passed_on) => return Poll::Ready(Err(passed_on)),
                        },
                    };
                    let answer = this.stage.answer.answer(error);
                    this.state.set(State::Answering { future: answer });
                }
                StateProj::Answering { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}
