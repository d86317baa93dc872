//! HTTP requests: which ones may be retried, and how they are copied for a retry. With
//! [`RetryAfterHeader`](crate::RetryAfterHeader), the pieces that
//! [`RetryLayerBuilder::http`](crate::RetryLayerBuilder::http) puts together.

use http::header::HeaderName;
use http::{Method, Request};
use http_body::Body;

use crate::body::ReplayBody;
use crate::replay::ReplayRequest;

/// The header that marks a request safe to retry whatever its method.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The longest `Idempotency-Key` value that marks a request retry-safe: 255 bytes, the
/// limit Stripe documents for its keys (a UUID is 36). A longer (or empty) key is not a
/// key a server can have stored, so it is treated as absent: the request is retried only
/// if its method or the [`Idempotent`] extension allows it.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A request extension that marks a request safe to retry whatever its method.
///
/// ```
/// use tower_prism_retry::{is_retry_safe, Idempotent};
///
/// let mut req = http::Request::post("/charge").body(()).unwrap();
/// assert!(!is_retry_safe(&req));
/// req.extensions_mut().insert(Idempotent);
/// assert!(is_retry_safe(&req));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Idempotent;

/// GET, HEAD, OPTIONS, PUT, DELETE and TRACE: the methods RFC 9110 calls idempotent.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether a request may be retried: an idempotent method, the [`Idempotent`] extension,
/// or an `Idempotency-Key` header of 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] bytes.
pub fn is_retry_safe<B>(request: &Request<B>) -> bool {
    is_idempotent(request.method())
        || request.extensions().get::<Idempotent>().is_some()
        || request
            .headers()
            .get(IDEMPOTENCY_KEY)
            .is_some_and(|key| (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len()))
}

/// Wraps a request's body in a [`ReplayBody`] that remembers up to `limit` bytes. Use it
/// with `tower::util::MapRequestLayer` in front of the retry layer.
pub fn replayable<B: Body>(request: Request<B>, limit: usize) -> Request<ReplayBody<B>> {
    request.map(|body| ReplayBody::new(body, limit))
}

/// Replays retry-safe ([`is_retry_safe`]) requests whose [`ReplayBody`] is still
/// replayable; every other request is sent once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayIdempotent;

impl<B> ReplayRequest<Request<ReplayBody<B>>> for ReplayIdempotent {
    fn replay(&self, request: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        if !is_retry_safe(request) {
            return None;
        }
        let body = request.body().try_clone()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }

    fn can_hedge(&self, request: &Request<ReplayBody<B>>) -> bool {
        !request.body().is_in_use()
    }
}

#[cfg(test)]
mod tests;
