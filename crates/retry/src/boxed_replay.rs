//! [`BoxedReplayLayer`]: replayable bodies for services whose request body is one boxed
//! type (tonic's `tonic::body::Body`, axum's `Body`), and [`ReplayBoxed`], which copies
//! such requests for a retry.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ReplayBody;
use crate::replay::ReplayRequest;

/// Turns a [`ReplayBody`] back into the boxed body type `B` (for tonic:
/// `tonic::body::Body::new`).
pub type Rebox<B> = fn(ReplayBody<B>) -> B;

/// A layer that makes every request's body replayable without changing its type, so a
/// retry stage below can send it again: tonic's channel takes only
/// `http::Request<tonic::body::Body>`, so the body is wrapped in a [`ReplayBody`]
/// (remembering up to `limit` bytes) and boxed again as a `tonic::body::Body`.
///
/// A second copy of the wrapped body travels in the request's extensions, where
/// [`ReplayBoxed`] (the gRPC profile's way of copying requests) finds it. A body over
/// `limit` (a long client stream) is sent once, whole, and not retried; unary calls and
/// short client streams are retried.
///
/// Put it above the stack (the retry stage copies the request before its first attempt):
///
/// ```
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_prism_retry::{BoxedReplayLayer, ReplayBoxed, ReplayRequest};
///
/// type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, tower::BoxError>;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let service = ServiceBuilder::new()
///     .layer(BoxedReplayLayer::new(64 * 1024, Body::new))
///     .service(service_fn(|request: Request<Body>| async move {
///         // what a retry stage does: keep a copy, send the original, then the copy
///         let copy = ReplayBoxed.replay(&request).expect("replayable");
///         let first = request.into_body().collect().await?.to_bytes();
///         let again = copy.into_body().collect().await?.to_bytes();
///         assert_eq!(first, again);
///         Ok::<_, tower::BoxError>(Response::new(first))
///     }));
/// let body = Body::new(Full::new(bytes::Bytes::from_static(b"hello")).map_err(Into::into));
/// let response = service.oneshot(Request::new(body)).await.unwrap();
/// assert_eq!(response.body(), "hello");
/// # }
/// ```
pub struct BoxedReplayLayer<B> {
    limit: usize,
    rebox: Rebox<B>,
}

impl<B> BoxedReplayLayer<B> {
    /// Remembers up to `limit` bytes of each request body; `rebox` boxes the
    /// [`ReplayBody`] as `B` again (`tonic::body::Body::new` for tonic).
    pub fn new(limit: usize, rebox: Rebox<B>) -> Self {
        BoxedReplayLayer { limit, rebox }
    }

    /// The most bytes remembered per request.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl<B> Clone for BoxedReplayLayer<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B> Copy for BoxedReplayLayer<B> {}

impl<B> std::fmt::Debug for BoxedReplayLayer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxedReplayLayer")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<S, B> Layer<S> for BoxedReplayLayer<B> {
    type Service = BoxedReplay<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        BoxedReplay {
            inner,
            limit: self.limit,
            rebox: self.rebox,
        }
    }
}

/// The service of [`BoxedReplayLayer`].
pub struct BoxedReplay<S, B> {
    inner: S,
    limit: usize,
    rebox: Rebox<B>,
}

impl<S: Clone, B> Clone for BoxedReplay<S, B> {
    fn clone(&self) -> Self {
        BoxedReplay {
            inner: self.inner.clone(),
            limit: self.limit,
            rebox: self.rebox,
        }
    }
}

impl<S: std::fmt::Debug, B> std::fmt::Debug for BoxedReplay<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxedReplay")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<S, B> BoxedReplay<S, B> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for BoxedReplay<S, B>
where
    S: Service<Request<B>>,
    B: http_body::Body + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> S::Future {
        // already made replayable (the layer twice in a stack): wrapping again would
        // only keep a second copy of the bytes
        if request.extensions().get::<ReplaySource<B>>().is_some() {
            return self.inner.call(request);
        }
        let (mut parts, body) = request.into_parts();
        let body = ReplayBody::new(body, self.limit);
        if let Some(spare) = body.try_clone() {
            parts.extensions.insert(ReplaySource {
                spare: Arc::new(Mutex::new(spare)),
                rebox: self.rebox,
            });
        }
        self.inner
            .call(Request::from_parts(parts, (self.rebox)(body)))
    }
}

/// The unread copy of a request's [`ReplayBody`], in its extensions. Extensions must be
/// `Sync` and a body is not (tonic's is `Send` only), hence the mutex; it is taken once
/// when the retry stage copies the request and once per retry or hedge, never while the
/// body is read, and the body's own state is behind a lock of its own anyway.
struct ReplaySource<B> {
    spare: Arc<Mutex<ReplayBody<B>>>,
    rebox: Rebox<B>,
}

impl<B> Clone for ReplaySource<B> {
    fn clone(&self) -> Self {
        ReplaySource {
            spare: self.spare.clone(),
            rebox: self.rebox,
        }
    }
}

impl<B> ReplaySource<B> {
    fn copy(&self) -> Option<B> {
        let body = tower_prism_core::internal::lock(&self.spare).try_clone()?;
        Some((self.rebox)(body))
    }

    fn is_replayable(&self) -> bool {
        tower_prism_core::internal::lock(&self.spare).is_replayable()
    }

    fn is_in_use(&self) -> bool {
        tower_prism_core::internal::lock(&self.spare).is_in_use()
    }
}

/// Copies a request made replayable by [`BoxedReplayLayer`], whatever its method: gRPC
/// retries by status code (gRFC A6), every call is a POST, and the classifier decides
/// which failures are safe to retry. A request that did not pass through the layer, or
/// whose body went over the layer's limit, is sent once.
///
/// For HTTP requests with a [`ReplayBody`] type, which should be retried only when
/// idempotent, use [`ReplayIdempotent`](crate::ReplayIdempotent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayBoxed;

impl<B: Send + 'static> ReplayRequest<Request<B>> for ReplayBoxed {
    fn replay(&self, request: &Request<B>) -> Option<Request<B>> {
        let body = request.extensions().get::<ReplaySource<B>>()?.copy()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }

    fn can_replay(&self, request: &Request<B>) -> bool {
        request
            .extensions()
            .get::<ReplaySource<B>>()
            .is_some_and(ReplaySource::is_replayable)
    }

    fn can_hedge(&self, request: &Request<B>) -> bool {
        request
            .extensions()
            .get::<ReplaySource<B>>()
            .is_some_and(|source| !source.is_in_use())
    }

    /// A gRPC request (`content-type: application/grpc...`) sent again carries
    /// `grpc-previous-rpc-attempts`: the attempts of the call sent before it, as gRFC A6
    /// has clients tell servers. Other requests are left as they are.
    fn mark_attempt(&self, copy: &mut Request<B>, previous: u32) {
        let grpc = copy
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
        if grpc {
            copy.headers_mut()
                .insert(GRPC_PREVIOUS_RPC_ATTEMPTS, previous.into());
        }
    }
}

/// gRFC A6's header on a retried or hedged gRPC request: how many attempts of the call
/// were sent before it.
const GRPC_PREVIOUS_RPC_ATTEMPTS: http::HeaderName =
    http::HeaderName::from_static("grpc-previous-rpc-attempts");

#[cfg(test)]
mod tests;
