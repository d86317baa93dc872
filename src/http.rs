//! Turning the stack's errors into HTTP responses, so servers need no error handler.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_prism_core::BoxError;
use tower_service::Service;

use crate::answering::{Answering, AnsweringFuture};
use crate::error::Error;

/// A layer that answers every error of the service below with an HTTP response
/// (429/503 with `Retry-After`, 502, 504; see [`ErrorKind::status`](crate::ErrorKind::status)),
/// so the resulting service never fails. axum routes take it without `HandleErrorLayer`.
///
/// A 429 from the rate-limit stage of an HTTP profile (`http()`, `http_server()`) also
/// carries the limiter's `RateLimit-Policy`, `RateLimit` and `X-RateLimit-Limit`,
/// `X-RateLimit-Remaining` (0) and `X-RateLimit-Reset` headers (see
/// [`Error::to_response`](crate::Error::to_response)).
///
/// ```
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_prism::HttpErrorLayer;
///
/// # tokio_test::block_on(async {
/// let failing = service_fn(|_req: http::Request<()>| async {
///     Err::<http::Response<String>, _>(tower::timeout::error::Elapsed::new())
/// });
/// let service = HttpErrorLayer::new().layer(failing);
/// let response = service.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(response.status(), 504);
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpErrorLayer {
    _priv: (),
}

impl HttpErrorLayer {
    /// A new layer.
    pub fn new() -> Self {
        HttpErrorLayer { _priv: () }
    }
}

impl<S> Layer<S> for HttpErrorLayer {
    type Service = HttpErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpErrors {
            inner: Answering::new(inner),
        }
    }
}

/// The service of [`HttpErrorLayer`]: errors become responses.
#[derive(Debug, Clone)]
pub struct HttpErrors<S> {
    inner: Answering<S>,
}

impl<S> HttpErrors<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner()
    }
}

impl<S, Req, B> Service<Req> for HttpErrors<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = HttpErrorsFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready::<Req>(cx).map(Ok)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        HttpErrorsFuture {
            inner: self.inner.call(req),
            _body: PhantomData,
        }
    }
}

pin_project! {
    /// The response future of [`HttpErrors`].
    pub struct HttpErrorsFuture<F, B> {
        #[pin]
        inner: AnsweringFuture<F>,
        _body: PhantomData<fn() -> B>,
    }
}

impl<F, B, E> Future for HttpErrorsFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll_answer(cx, answer).map(Ok)
    }
}

/// The response for `error`.
#[cold]
#[inline(never)]
fn answer<B: Default>(error: Error) -> Response<B> {
    tracing::debug!(kind = error.kind().as_str(), %error, "answering with an error response");
    error.to_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::{service_fn, ServiceExt};

    use super::*;

    #[tokio::test]
    async fn an_absurd_retry_after_from_a_stage_is_answered_with_at_most_a_day() {
        // `Duration::MAX` overflowed the rounding up to whole seconds (a panic in debug
        // builds); a year was written as it was.
        for wait in [Duration::MAX, Duration::from_secs(31_536_000)] {
            let failing = service_fn(move |_req: http::Request<()>| async move {
                Err::<Response<String>, _>(tower_prism_limit::Error::RateLimited {
                    retry_after: wait,
                })
            });
            let response = HttpErrorLayer::new()
                .layer(failing)
                .oneshot(http::Request::new(()))
                .await
                .unwrap();
            assert_eq!(response.status(), 429);
            assert_eq!(response.headers()[http::header::RETRY_AFTER], "86400");
        }
    }

    /// Not ready once (an error), then ready: the next call goes to the service. The failed
    /// readiness was kept and answered (503) however many readinesses succeeded after it.
    #[tokio::test]
    async fn a_readiness_failure_is_answered_only_until_a_readiness_succeeds() {
        #[derive(Clone)]
        struct FailsReadyOnce(bool);
        impl tower_service::Service<()> for FailsReadyOnce {
            type Response = Response<String>;
            type Error = BoxError;
            type Future = std::future::Ready<Result<Response<String>, BoxError>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
                if std::mem::replace(&mut self.0, false) {
                    return Poll::Ready(Err("not ready".into()));
                }
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: ()) -> Self::Future {
                std::future::ready(Ok(Response::new("served".to_owned())))
            }
        }
        let mut svc = HttpErrorLayer::new().layer(FailsReadyOnce(true));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready(), "the failure, kept");
        assert!(svc.poll_ready(&mut cx).is_ready(), "ready now");
        let response = svc.call(()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.body(), "served");
    }
}
