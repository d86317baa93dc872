//! The two ways the suite builds the whole stack: the `Generic` profile over `u32` requests
//! and the `.http()` client profile over replayable HTTP requests, behind one trait so that
//! each fault scenario is written once and run for both.

use bytes::Bytes;
use http_body_util::Full;
use tower::BoxError;
use tower_prism::retry::replayable;
use tower_prism::retry::ReplayBody;
use tower_prism::{Generic, Http, Profile, ReliabilityLayer, ReliabilityLayerBuilder};

use super::HttpResponse;

/// A profile, its request and response types, and what a good answer is.
pub trait Flavor {
    /// The profile.
    type P: Profile;
    /// The request the stack takes.
    type Req;
    /// The response it gives.
    type Res: std::fmt::Debug;
    /// A builder with this profile and no stage.
    fn builder() -> ReliabilityLayerBuilder<Self::P>;
    /// A (retry-safe) request.
    fn request() -> Self::Req;
    /// Whether a call ended with the endpoint's good answer.
    fn answered(result: &Result<Self::Res, BoxError>) -> bool;
}

/// The `Generic` profile: `u32` requests echoed back, `Err` a retryable failure.
#[derive(Debug)]
pub struct GenericFlavor;

impl Flavor for GenericFlavor {
    type P = Generic;
    type Req = u32;
    type Res = u32;
    fn builder() -> ReliabilityLayerBuilder<Generic> {
        ReliabilityLayer::builder()
    }
    fn request() -> u32 {
        7
    }
    fn answered(result: &Result<u32, BoxError>) -> bool {
        matches!(result, Ok(7))
    }
}

/// The `.http()` profile: replayable GET requests, a 503 a retryable failure.
#[derive(Debug)]
pub struct HttpFlavor;

/// The HTTP request the stack takes.
pub type HttpRequest = http::Request<ReplayBody<Full<Bytes>>>;

impl Flavor for HttpFlavor {
    type P = Http;
    type Req = HttpRequest;
    type Res = HttpResponse;
    fn builder() -> ReliabilityLayerBuilder<Http> {
        ReliabilityLayer::builder().http()
    }
    fn request() -> HttpRequest {
        let request = http::Request::get("http://upstream.invalid/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        replayable(request, 1024)
    }
    fn answered(result: &Result<HttpResponse, BoxError>) -> bool {
        matches!(result, Ok(response) if response.status() == http::StatusCode::OK)
    }
}
