//! `ServiceBuilder::reliability(..)` and `protect(..)`: the stack in one call.

use std::future::Future;

use tower::util::ServiceFn;
use tower::{ServiceBuilder, ServiceExt};
use tower_layer::{Layer, Stack};
use tower_prism_core::BoxError;
use tower_service::Service;

use crate::error::Error;
use crate::grpc::GrpcErrorLayer;
use crate::http::HttpErrorLayer;
use crate::layer::ReliabilityLayer;
use crate::profile::Profile;
use crate::service::Reliability;

/// Adds tower-prism's layers to a [`ServiceBuilder`][tower-sb], reading as English:
/// `ServiceBuilder::new().reliability(layer)`.
///
/// [tower-sb]: https://docs.rs/tower/0.5/tower/struct.ServiceBuilder.html
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds the whole [`ReliabilityLayer`] stack.
    fn reliability<P: Profile>(
        self,
        layer: ReliabilityLayer<P>,
    ) -> ServiceBuilder<Stack<ReliabilityLayer<P>, L>>;

    /// Answers every error from below with an HTTP response ([`HttpErrorLayer`]).
    fn http_errors(self) -> ServiceBuilder<Stack<HttpErrorLayer, L>>;

    /// Answers every error from below with a gRPC status ([`GrpcErrorLayer`]), for tonic
    /// servers.
    fn grpc_errors(self) -> ServiceBuilder<Stack<GrpcErrorLayer, L>>;
}

impl<L> sealed::Sealed for ServiceBuilder<L> {}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn reliability<P: Profile>(
        self,
        layer: ReliabilityLayer<P>,
    ) -> ServiceBuilder<Stack<ReliabilityLayer<P>, L>> {
        self.layer(layer)
    }

    fn http_errors(self) -> ServiceBuilder<Stack<HttpErrorLayer, L>> {
        self.layer(HttpErrorLayer::new())
    }

    fn grpc_errors(self) -> ServiceBuilder<Stack<GrpcErrorLayer, L>> {
        self.layer(GrpcErrorLayer::new())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// An async function behind the whole stack; see [`protect`].
#[derive(Debug, Clone)]
pub struct Protected<S> {
    service: S,
}

impl<S> Protected<S> {
    /// Runs one call through the stack: waits for readiness, calls, and classifies any error
    /// into an [`Error`].
    pub async fn call<Req>(&self, req: Req) -> Result<S::Response, Error>
    where
        S: Service<Req, Error = BoxError> + Clone,
    {
        self.service
            .clone()
            .oneshot(req)
            .await
            .map_err(Error::from_box)
    }

    /// The stacked tower service, to use with a `ServiceBuilder` or a server.
    pub fn into_service(self) -> S {
        self.service
    }
}

/// Protects an async closure with the whole stack: the one-call entry point.
///
/// ```
/// use std::time::Duration;
/// use tower_prism::{protect, ErrorKind, ReliabilityLayer};
/// use tower_prism::limit::rate::RateLimitConfig;
///
/// # tokio_test::block_on(async {
/// let policy = ReliabilityLayer::builder()
///     .name("lookup")
///     .rate_limit(RateLimitConfig::new(1, Duration::from_secs(60)))
///     .build()
///     .unwrap();
/// let lookup = protect(&policy, |id: u32| async move { Ok::<_, std::io::Error>(id * 2) });
///
/// assert_eq!(lookup.call(21).await.unwrap(), 42);
/// let shed = lookup.call(1).await.unwrap_err(); // one call a minute
/// assert_eq!(shed.kind(), ErrorKind::RateLimited);
/// # });
/// ```
pub fn protect<P, F, Fut, Req, Res, E>(
    layer: &ReliabilityLayer<P>,
    f: F,
) -> Protected<Reliability<ServiceFn<F>, P>>
where
    F: FnMut(Req) -> Fut + Clone,
    Fut: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    P: Profile,
{
    Protected {
        service: layer.layer(tower::service_fn(f)),
    }
}
