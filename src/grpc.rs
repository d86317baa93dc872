//! gRPC servers: the stack's errors answered as gRPC statuses (Trailers-Only responses),
//! so a tonic client sees `RESOURCE_EXHAUSTED` or `UNAVAILABLE`, not an HTTP 429 or 503.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_prism_core::{BoxError, GrpcCode, GRPC_MESSAGE, GRPC_RETRY_PUSHBACK_MS};
use tower_service::Service;

use crate::answering::{Answering, AnsweringFuture};
use crate::error::{Error, ErrorKind};

/// The longest `grpc-message` written, in bytes of the error's text before
/// percent-encoding: a message is for a person, and a header has to stay small.
const MAX_MESSAGE: usize = 256;

/// The code of an error from below the stack: the first I/O error in its source chain
/// that tells a connection failure or a timeout, as tonic reads a transport error.
fn code_of_inner(error: &(dyn std::error::Error + 'static)) -> GrpcCode {
    use std::io::ErrorKind as Io;
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            match io.kind() {
                Io::ConnectionRefused
                | Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::NotConnected
                | Io::BrokenPipe
                | Io::UnexpectedEof => return GrpcCode::Unavailable,
                Io::TimedOut => return GrpcCode::DeadlineExceeded,
                _ => {}
            }
        }
        next = error.source();
    }
    GrpcCode::Unknown
}

impl ErrorKind {
    /// The gRPC status a server answers with for this kind of error:
    ///
    /// | kind | code |
    /// |---|---|
    /// | `RateLimited` | `RESOURCE_EXHAUSTED` |
    /// | `ConcurrencyLimited`, `CircuitOpen`, `NoHealthyEndpoint`, `LimiterUnavailable` | `UNAVAILABLE` |
    /// | `Timeout` | `DEADLINE_EXCEEDED` |
    /// | `RetriesExhausted` | `UNAVAILABLE` (as gRPC reads an HTTP 502) |
    /// | `Inner` | `UNKNOWN` (as tonic answers an error it does not know; see [`Error::grpc_code`] for the ones it knows) |
    pub fn grpc_code(self) -> GrpcCode {
        match self {
            ErrorKind::RateLimited => GrpcCode::ResourceExhausted,
            ErrorKind::ConcurrencyLimited
            | ErrorKind::CircuitOpen
            | ErrorKind::NoHealthyEndpoint
            | ErrorKind::LimiterUnavailable
            | ErrorKind::RetriesExhausted => GrpcCode::Unavailable,
            ErrorKind::Timeout => GrpcCode::DeadlineExceeded,
            ErrorKind::Inner => GrpcCode::Unknown,
        }
    }
}

impl Error {
    /// The gRPC status for this error (see [`ErrorKind::grpc_code`]). An error from below
    /// the stack ([`ErrorKind::Inner`]) is read as tonic reads one: a connection refused,
    /// reset, aborted or lost (an I/O error in its source chain) is `UNAVAILABLE`, an I/O
    /// timeout `DEADLINE_EXCEEDED`, anything else `UNKNOWN`. A client that answers its
    /// errors with `grpc_errors()` sees the code tonic alone would give.
    pub fn grpc_code(&self) -> GrpcCode {
        match self.kind() {
            ErrorKind::Inner => code_of_inner(self),
            kind => kind.grpc_code(),
        }
    }

    /// A gRPC Trailers-Only response for this error: HTTP 200, `content-type:
    /// application/grpc`, `grpc-status` ([`grpc_code`](Error::grpc_code)), `grpc-message`
    /// (the error's text, percent-encoded, at most 256 bytes of it) and, when the error
    /// knows how long to wait, `grpc-retry-pushback-ms` (`-1`, gRFC A6's "do not retry",
    /// for a [permanent](Error::is_permanent) one); an empty body.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_prism::Error;
    ///
    /// let shed = tower_prism::limit::Error::RateLimited { retry_after: Duration::from_millis(1500) };
    /// let response: http::Response<String> = Error::from_box(Box::new(shed)).to_grpc_response();
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["grpc-status"], "8"); // RESOURCE_EXHAUSTED
    /// assert_eq!(response.headers()["grpc-retry-pushback-ms"], "1500");
    /// ```
    pub fn to_grpc_response<B: Default>(&self) -> Response<B> {
        let mut response = self.grpc_code().trailers_only();
        let headers = response.headers_mut();
        if let Some(message) = grpc_message(&self.to_string()) {
            headers.insert(GRPC_MESSAGE, message);
        }
        if let Some(wait) = self.retry_after() {
            headers.insert(GRPC_RETRY_PUSHBACK_MS, pushback_value(wait));
        } else if self.is_permanent() {
            // gRFC A6: a negative pushback tells the client not to retry at all.
            headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("-1"));
        }
        response
    }
}

/// `wait` in whole milliseconds, rounded up so a client never comes back early.
fn pushback_value(wait: Duration) -> HeaderValue {
    let millis = wait.as_nanos().div_ceil(1_000_000);
    HeaderValue::from(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// `text` percent-encoded as gRPC's `grpc-message` wants (every byte outside printable
/// ASCII, and `%`), cut at a character boundary after [`MAX_MESSAGE`] bytes.
fn grpc_message(text: &str) -> Option<HeaderValue> {
    let mut end = text.len().min(MAX_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut encoded = String::with_capacity(end);
    for byte in &text.as_bytes()[..end] {
        match byte {
            b' '..=b'~' if *byte != b'%' => encoded.push(char::from(*byte)),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                encoded.push('%');
                encoded.push(char::from(HEX[usize::from(byte >> 4)]));
                encoded.push(char::from(HEX[usize::from(byte & 0xF)]));
            }
        }
    }
    HeaderValue::try_from(encoded).ok()
}

/// A layer that answers every error of the service below with a gRPC status
/// ([`Error::to_grpc_response`]), so the resulting service never fails: put it above a
/// [`ReliabilityLayer`](crate::ReliabilityLayer) on a tonic server, and a rejection
/// reaches the client as `RESOURCE_EXHAUSTED` (rate limit), `UNAVAILABLE` (open circuit,
/// concurrency limit, no healthy endpoint) or `DEADLINE_EXCEEDED`, with
/// `grpc-retry-pushback-ms` when the stage knows how long to wait.
///
/// On a tonic client it does the same for the client's own stack: without it, tonic reads
/// an error of the stack (a local rate limit, an open circuit) as `UNKNOWN`; with it, as
/// the status above, and a caller can match on `tonic::Code`.
///
/// ```
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_prism::GrpcErrorLayer;
///
/// # tokio_test::block_on(async {
/// let failing = service_fn(|_req: http::Request<()>| async {
///     Err::<http::Response<String>, _>(tower::timeout::error::Elapsed::new())
/// });
/// let service = GrpcErrorLayer::new().layer(failing);
/// let response = service.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["grpc-status"], "4"); // DEADLINE_EXCEEDED
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcErrorLayer {
    _priv: (),
}

impl GrpcErrorLayer {
    /// A new layer.
    pub fn new() -> Self {
        GrpcErrorLayer { _priv: () }
    }
}

impl<S> Layer<S> for GrpcErrorLayer {
    type Service = GrpcErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcErrors {
            inner: Answering::new(inner),
        }
    }
}

/// The service of [`GrpcErrorLayer`]: errors become gRPC statuses.
#[derive(Debug, Clone)]
pub struct GrpcErrors<S> {
    inner: Answering<S>,
}

impl<S> GrpcErrors<S> {
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

impl<S, Req, B> Service<Req> for GrpcErrors<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = GrpcErrorsFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready::<Req>(cx).map(Ok)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        GrpcErrorsFuture {
            inner: self.inner.call(req),
            _body: PhantomData,
        }
    }
}

pin_project! {
    /// The response future of [`GrpcErrors`].
    pub struct GrpcErrorsFuture<F, B> {
        #[pin]
        inner: AnsweringFuture<F>,
        _body: PhantomData<fn() -> B>,
    }
}

impl<F, B, E> Future for GrpcErrorsFuture<F, B>
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

/// The gRPC status response for `error`.
#[cold]
#[inline(never)]
fn answer<B: Default>(error: Error) -> Response<B> {
    tracing::debug!(
        kind = error.kind().as_str(),
        code = error.grpc_code().as_str(),
        %error,
        "answering with a gRPC status"
    );
    error.to_grpc_response()
}

#[cfg(test)]
mod tests {
    use http::header::CONTENT_TYPE;
    use tower::{service_fn, ServiceExt};
    use tower_prism_core::GRPC_STATUS;

    use super::*;

    /// A transport error below the stack answered as tonic alone answers it: a refused
    /// connection (an I/O error deep in the chain, as hyper and tonic wrap it) was
    /// `UNKNOWN` under `grpc_errors()`, where tonic says `UNAVAILABLE`.
    #[test]
    fn a_connection_failure_below_the_stack_is_unavailable() {
        #[derive(Debug)]
        struct Transport(std::io::Error);
        impl std::fmt::Display for Transport {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("transport error")
            }
        }
        impl std::error::Error for Transport {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let code = |kind| {
            let io = std::io::Error::new(kind, "connecting");
            Error::from_box(Box::new(Transport(io))).grpc_code()
        };
        assert_eq!(
            code(std::io::ErrorKind::ConnectionRefused),
            GrpcCode::Unavailable
        );
        assert_eq!(
            code(std::io::ErrorKind::ConnectionReset),
            GrpcCode::Unavailable
        );
        assert_eq!(
            code(std::io::ErrorKind::TimedOut),
            GrpcCode::DeadlineExceeded
        );
        assert_eq!(code(std::io::ErrorKind::InvalidData), GrpcCode::Unknown);
        assert_eq!(
            Error::from_box("boom".into()).grpc_code(),
            GrpcCode::Unknown
        );
    }

    #[test]
    fn messages_are_percent_encoded_and_bounded() {
        assert_eq!(
            grpc_message("shed: 100% busy").unwrap(),
            "shed: 100%25 busy"
        );
        assert_eq!(grpc_message("été\n").unwrap(), "%C3%A9t%C3%A9%0A");
        let long = "é".repeat(200); // 400 bytes
        let encoded = grpc_message(&long).unwrap();
        // 128 whole characters (256 bytes), each as two escapes
        assert_eq!(encoded.len(), 128 * 6);
    }

    #[test]
    fn pushback_rounds_up_to_whole_milliseconds() {
        assert_eq!(pushback_value(Duration::from_micros(1500)), "2");
        assert_eq!(pushback_value(Duration::ZERO), "0");
        assert_eq!(pushback_value(Duration::from_secs(86_400)), "86400000");
        assert_eq!(pushback_value(Duration::MAX), u64::MAX.to_string().as_str());
    }

    #[tokio::test]
    async fn a_failed_poll_ready_is_answered_on_the_next_call() {
        struct NotReady;
        impl Service<()> for NotReady {
            type Response = Response<String>;
            type Error = BoxError;
            type Future = std::future::Ready<Result<Response<String>, BoxError>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
                Poll::Ready(Err(Box::new(tower_prism_breaker::Error::CircuitOpen {
                    retry_after: Duration::from_secs(2),
                })))
            }
            fn call(&mut self, _: ()) -> Self::Future {
                unreachable!("never ready")
            }
        }
        let response = GrpcErrorLayer::new()
            .layer(NotReady)
            .oneshot(())
            .await
            .unwrap();
        assert_eq!(response.headers()[GRPC_STATUS], "14");
        assert_eq!(response.headers()[GRPC_RETRY_PUSHBACK_MS], "2000");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
    }

    #[tokio::test]
    async fn responses_pass_through_untouched() {
        let ok = service_fn(|_: ()| async { Ok::<_, BoxError>(Response::new("hi".to_owned())) });
        let response = GrpcErrorLayer::new().layer(ok).oneshot(()).await.unwrap();
        assert_eq!(response.body(), "hi");
        assert!(response.headers().is_empty());
    }
}
