//! [`FaultLayer`] and its builder.

use std::any::TypeId;

use tower_layer::Layer;
use tower_prism_core::ConfigError;

use crate::config::FaultConfig;
use crate::handle::{check_status_supported, FaultHandle, StatusKinds};
use crate::service::Fault;
use crate::status::NoStatus;

/// The policy name a layer gets when its builder is given none.
const DEFAULT_NAME: &str = "default";

/// Wraps services in a [`Fault`] stage. Every service this layer makes (and every clone
/// of the layer) shares one [`FaultHandle`], reached with [`handle`](Self::handle).
///
/// `I` builds the response of a status fault ([`InjectStatus`](crate::InjectStatus));
/// the default, [`NoStatus`], cannot, and refuses a config with one.
///
/// ```
/// use tower_prism_fault::{FaultConfig, FaultLayer, HttpStatus, StatusFault};
///
/// // the plain way
/// let layer = FaultLayer::from_config(&FaultConfig::default()).unwrap();
/// assert_eq!(layer.handle().name(), "default");
///
/// // with what a config file cannot say: the name, and how to build a response
/// let config = FaultConfig::builder().status(StatusFault::new(0.1, 503)).build().unwrap();
/// assert!(FaultLayer::from_config(&config).is_err());
/// let layer = FaultLayer::builder(config)
///     .name("payments")
///     .status_with(HttpStatus)
///     .build()
///     .unwrap();
/// assert_eq!(layer.handle().name(), "payments");
/// ```
#[derive(Debug, Clone)]
pub struct FaultLayer<I = NoStatus> {
    handle: FaultHandle,
    status: I,
}

impl FaultLayer {
    /// A layer named `"default"` that injects errors, aborts and latency; a status fault
    /// is refused (see [`FaultLayerBuilder::status_with`]).
    pub fn from_config(config: &FaultConfig) -> Result<Self, ConfigError> {
        Self::builder(config.clone()).build()
    }

    /// A builder: [`name`](FaultLayerBuilder::name),
    /// [`status_with`](FaultLayerBuilder::status_with).
    pub fn builder(config: FaultConfig) -> FaultLayerBuilder {
        FaultLayerBuilder {
            config,
            name: DEFAULT_NAME.to_owned(),
            status: NoStatus,
            status_kinds: StatusKinds::None,
        }
    }
}

impl<I> FaultLayer<I> {
    /// The shared stage: [`snapshot`](FaultHandle::snapshot),
    /// [`reconfigure`](FaultHandle::reconfigure).
    pub fn handle(&self) -> &FaultHandle {
        &self.handle
    }
}

impl<S, I: Clone> Layer<S> for FaultLayer<I> {
    type Service = Fault<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault::new(inner, self.handle.clone(), self.status.clone())
    }
}

/// Builds a [`FaultLayer`], from [`FaultLayer::builder`]: what a config file cannot say.
#[derive(Debug, Clone)]
#[must_use = "call `build()` to get the layer"]
pub struct FaultLayerBuilder<I = NoStatus> {
    config: FaultConfig,
    name: String,
    status: I,
    status_kinds: StatusKinds,
}

impl<I> FaultLayerBuilder<I> {
    /// Sets the policy name: the `name` label of the stage's metrics, and its log events
    /// (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Builds status faults' responses with `status`: [`HttpStatus`](crate::HttpStatus)
    /// for `http::Response<B>` with `B: Default`, [`EmptyHttpBody`](crate::EmptyHttpBody)
    /// for `http::Response<B>` with any `B`, or a closure `Fn(StatusCode) -> Option<Res>`.
    /// With it the layer (and its [`reconfigure`](FaultHandle::reconfigure)) accepts a
    /// [`StatusFault`](crate::StatusFault), unless `status` is [`NoStatus`], which can
    /// build nothing: a layer given it still refuses one, as the default does (so code
    /// generic over the injector can always call this).
    ///
    /// A layer built this way refuses a status fault with a `grpc_code`, naming
    /// `status.grpc_code`: see [`grpc_status_with`](Self::grpc_status_with).
    pub fn status_with<I2: 'static>(self, status: I2) -> FaultLayerBuilder<I2> {
        self.injector(status, StatusKinds::Http)
    }

    /// Like [`status_with`](Self::status_with), for a builder that also answers gRPC
    /// statuses ([`InjectStatus::grpc_response`](crate::InjectStatus::grpc_response):
    /// [`GrpcStatus`](crate::GrpcStatus), for `http::Response<B>` with `B: Default`): the
    /// layer accepts a [`StatusFault`](crate::StatusFault) with a `code` or a `grpc_code`.
    ///
    /// ```
    /// use tower_prism_core::GrpcCode;
    /// use tower_prism_fault::{FaultConfig, FaultLayer, GrpcStatus, HttpStatus, StatusFault};
    ///
    /// let config = FaultConfig::builder()
    ///     .status(StatusFault::grpc(0.1, GrpcCode::Unavailable))
    ///     .build()
    ///     .unwrap();
    /// let err = FaultLayer::builder(config.clone()).status_with(HttpStatus).build().unwrap_err();
    /// assert_eq!(err.field(), "status.grpc_code");
    /// FaultLayer::builder(config).grpc_status_with(GrpcStatus).build().unwrap();
    /// ```
    pub fn grpc_status_with<I2: 'static>(self, status: I2) -> FaultLayerBuilder<I2> {
        self.injector(status, StatusKinds::Grpc)
    }

    /// `status`, which can build the `kinds` of status unless it is [`NoStatus`].
    fn injector<I2: 'static>(self, status: I2, kinds: StatusKinds) -> FaultLayerBuilder<I2> {
        let none = TypeId::of::<I2>() == TypeId::of::<NoStatus>();
        FaultLayerBuilder {
            config: self.config,
            name: self.name,
            status,
            status_kinds: if none { StatusKinds::None } else { kinds },
        }
    }

    /// The layer; an error names the config field it refuses.
    pub fn build(self) -> Result<FaultLayer<I>, ConfigError> {
        self.config.validate()?;
        check_status_supported(&self.config, self.status_kinds)?;
        Ok(FaultLayer {
            handle: FaultHandle::new(self.name, &self.config, self.status_kinds),
            status: self.status,
        })
    }
}
