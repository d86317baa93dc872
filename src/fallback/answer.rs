//! [`Answer`]: what a fallback gives instead of an error, and its three code-given forms
//! (a closure, a value, a service). The config-given HTTP form is in `http_answer`.

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Future, Ready};

use tower_prism_core::internal::ReadyCall;
use tower_prism_core::BoxError;
use tower_service::Service;

use super::failed_response::FailedResponse;
use crate::error::Error;

/// How a [`Fallback`](super::Fallback) answers an error it handles, with a `Res` (the
/// inner service's response type).
///
/// The answer is given the classified error, not the request: the request was moved into
/// the inner service's `call`, and keeping a copy of every request in case it fails would
/// cost a clone (or an allocation) on every call, the successful ones included. What an
/// answer needs from the request (a user id for a cached page) belongs in the closure's
/// or service's own state, or in a stage below that puts it in its error.
///
/// Implemented by [`AnswerFn`], [`AnswerValue`], [`AnswerService`] and [`HttpAnswer`];
/// the [layer builder](super::FallbackLayerBuilder) picks one. Implement it for an answer
/// of your own.
///
/// [`HttpAnswer`]: super::HttpAnswer
pub trait Answer<Res> {
    /// The answer's error: what the fallback call fails with when the answer itself
    /// fails (a fallback service's error).
    type Error: Into<BoxError>;
    /// The answer, once ready.
    type Future: Future<Output = Result<Res, Self::Error>>;

    /// The answer to `error`.
    fn answer(&self, error: Error) -> Self::Future;

    /// Whether the inner service's `response` is a failure to answer as well (Polly's
    /// `ShouldHandle` on results): `Some` with the error to answer, made with
    /// [`FailedResponse`](super::FailedResponse). `None` by default: only errors are
    /// answered. [`HttpAnswer`](super::HttpAnswer) answers the statuses of
    /// [`FallbackConfig::on_status`](super::FallbackConfig::on_status);
    /// [`FallbackLayerBuilder::on_response`](super::FallbackLayerBuilder::on_response)
    /// gives any answer a predicate.
    #[inline]
    fn failure(&self, response: &Res) -> Option<Error> {
        let _ = response;
        None
    }
}

/// An answer that also answers the responses `handles` picks
/// ([`FallbackLayerBuilder::on_response`](super::FallbackLayerBuilder::on_response)).
#[derive(Clone)]
pub struct OnResponse<A, F> {
    answer: A,
    handles: F,
}

impl<A, F> OnResponse<A, F> {
    pub(crate) fn new(answer: A, handles: F) -> Self {
        OnResponse { answer, handles }
    }
}

impl<A: fmt::Debug, F> fmt::Debug for OnResponse<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnResponse")
            .field("answer", &self.answer)
            .finish_non_exhaustive()
    }
}

impl<A, F, Res> Answer<Res> for OnResponse<A, F>
where
    A: Answer<Res>,
    F: Fn(&Res) -> bool,
{
    type Error = A::Error;
    type Future = A::Future;

    fn answer(&self, error: Error) -> Self::Future {
        self.answer.answer(error)
    }

    #[inline]
    fn failure(&self, response: &Res) -> Option<Error> {
        if let Some(error) = self.answer.failure(response) {
            return Some(error);
        }
        // The response's type is the caller's: its status, if it has one, is not known
        // here.
        (self.handles)(response).then(|| Error::from_box(Box::new(FailedResponse::new(None, None))))
    }
}

/// Answers with a closure's return value: `Fn(&Error) -> Res`
/// ([`FallbackLayer::answer_with`](super::FallbackLayer::answer_with)).
#[derive(Clone)]
pub struct AnswerFn<F> {
    f: F,
}

impl<F> AnswerFn<F> {
    pub(crate) fn new(f: F) -> Self {
        AnswerFn { f }
    }
}

impl<F> fmt::Debug for AnswerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerFn").finish_non_exhaustive()
    }
}

impl<F, Res> Answer<Res> for AnswerFn<F>
where
    F: Fn(&Error) -> Res,
{
    type Error = Infallible;
    type Future = Ready<Result<Res, Infallible>>;

    fn answer(&self, error: Error) -> Self::Future {
        ready(Ok((self.f)(&error)))
    }
}

/// Answers with a copy of one value ([`FallbackLayer::value`](super::FallbackLayer::value)).
#[derive(Debug, Clone)]
pub struct AnswerValue<V> {
    value: V,
}

impl<V> AnswerValue<V> {
    pub(crate) fn new(value: V) -> Self {
        AnswerValue { value }
    }
}

impl<V: Clone> Answer<V> for AnswerValue<V> {
    type Error = Infallible;
    type Future = Ready<Result<V, Infallible>>;

    fn answer(&self, _: Error) -> Self::Future {
        ready(Ok(self.value.clone()))
    }
}

/// Answers by calling another service with the error
/// ([`FallbackLayer::service`](super::FallbackLayer::service)): a backup upstream, a
/// cache. Each answer drives a clone of the service to readiness, then calls it; its
/// error is the call's error.
#[derive(Debug, Clone)]
pub struct AnswerService<S> {
    service: S,
}

impl<S> AnswerService<S> {
    pub(crate) fn new(service: S) -> Self {
        AnswerService { service }
    }
}

impl<S, Res> Answer<Res> for AnswerService<S>
where
    S: Service<Error, Response = Res> + Clone,
    S::Error: Into<BoxError>,
{
    type Error = S::Error;
    type Future = ReadyCall<S, Error>;

    fn answer(&self, error: Error) -> Self::Future {
        ReadyCall::new(self.service.clone(), error)
    }
}
