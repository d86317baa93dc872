//! [`Profile`]: what a stack's requests and responses are, so that the breaker, retry and
//! balance stages classify results and replay requests the right way.

use tower_prism_core::{DefaultClassifier, HttpClassifier};
use tower_prism_retry::{CloneRequest, NoHint, ReplayIdempotent, ReplayRequest, RetryAfterHeader};

/// How a stack's stages see its calls: the classifier the breaker, retry and balancer
/// share, how the retry stage copies a request, and where it finds a response's
/// retry-after hint.
///
/// Pick one with [`ReliabilityLayerBuilder::http`](crate::ReliabilityLayerBuilder::http),
/// [`http_server`](crate::ReliabilityLayerBuilder::http_server) or
/// [`classify`](crate::ReliabilityLayerBuilder::classify); [`Generic`] is the default.
/// Implement it for a protocol of your own.
pub trait Profile: Clone + Send + Sync + 'static {
    /// Decides what a result means
    /// ([`Classify`](tower_prism_core::Classify) over the response and a
    /// [`BoxError`](crate::BoxError)).
    type Classify: Clone + Send + Sync + 'static;
    /// Copies a request for a retry (a `ReplayRequest` of [`retry`](crate::retry)).
    type Replay: Clone + Send + Sync + 'static;
    /// Reads a retry-after hint off a response
    /// ([`ResponseHint`](tower_prism_retry::ResponseHint)).
    type Hint: Clone + Send + Sync + 'static;

    /// The classifier.
    fn classify(&self) -> Self::Classify;
    /// The request copier.
    fn replay(&self) -> Self::Replay;
    /// The response hint.
    fn hint(&self) -> Self::Hint;
    /// Whether a retry stage makes sense for this profile (a server cannot replay the
    /// requests it receives); building a retry stage for a profile that says no fails.
    fn can_retry(&self) -> bool {
        true
    }
}

/// Any request type: `Err` is a retryable failure, every `Ok` a success; retries clone the
/// request (`Req: Clone`). The default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generic;

impl Profile for Generic {
    type Classify = DefaultClassifier;
    type Replay = CloneRequest;
    type Hint = NoHint;
    fn classify(&self) -> DefaultClassifier {
        DefaultClassifier
    }
    fn replay(&self) -> CloneRequest {
        CloneRequest
    }
    fn hint(&self) -> NoHint {
        NoHint
    }
}

/// Like [`Generic`], with your own classifier (a closure over `Result<&Res, &BoxError>`
/// or any [`Classify`](tower_prism_core::Classify)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Classified<C>(pub C);

impl<C: Clone + Send + Sync + 'static> Profile for Classified<C> {
    type Classify = C;
    type Replay = CloneRequest;
    type Hint = NoHint;
    fn classify(&self) -> C {
        self.0.clone()
    }
    fn replay(&self) -> CloneRequest {
        CloneRequest
    }
    fn hint(&self) -> NoHint {
        NoHint
    }
}

/// An HTTP client: responses classified by status ([`HttpClassifier`]: 5xx, 429 and 408
/// are failures), idempotent requests retried when their body is a
/// [`ReplayBody`](tower_prism_retry::ReplayBody) (wrap them with
/// [`retry::replayable`](crate::retry)), `Retry-After` honoured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Http;

impl Profile for Http {
    type Classify = HttpClassifier;
    type Replay = ReplayIdempotent;
    type Hint = RetryAfterHeader;
    fn classify(&self) -> HttpClassifier {
        HttpClassifier
    }
    fn replay(&self) -> ReplayIdempotent {
        ReplayIdempotent
    }
    fn hint(&self) -> RetryAfterHeader {
        RetryAfterHeader
    }
}

/// An HTTP server (axum, hyper): responses classified by status like [`Http`], any
/// request body type; no retry stage (a server cannot replay what it received).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpServer;

/// Never copies a request: every request is sent once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOnce;

impl<Req> ReplayRequest<Req> for SendOnce {
    fn replay(&self, _request: &Req) -> Option<Req> {
        None
    }

    fn can_replay(&self, _request: &Req) -> bool {
        false
    }
}

impl Profile for HttpServer {
    type Classify = HttpClassifier;
    type Replay = SendOnce;
    type Hint = RetryAfterHeader;
    fn classify(&self) -> HttpClassifier {
        HttpClassifier
    }
    fn replay(&self) -> SendOnce {
        SendOnce
    }
    fn hint(&self) -> RetryAfterHeader {
        RetryAfterHeader
    }
    fn can_retry(&self) -> bool {
        false
    }
}
