//! [`DeadlineLayer`] and its builder.

use tower_layer::Layer;
use tower_prism_core::ConfigError;

use crate::carrier::AnyRequest;
use crate::config::DeadlineConfig;
use crate::handle::DeadlineHandle;
use crate::propagate::PropagateDeadlineLayer;
use crate::service::Deadline;

/// The policy name a layer gets when its builder is given none.
const DEFAULT_NAME: &str = "default";

/// Wraps services in a [`Deadline`]. Every service this layer makes (and every clone of
/// the layer) shares one [`DeadlineHandle`], reached with [`handle`](Self::handle).
///
/// ```
/// use std::time::Duration;
/// use tower_prism_deadline::{DeadlineConfig, DeadlineLayer, HttpRequest};
///
/// // the plain way: any request type, the policy's timeout and the ambient deadline
/// let config = DeadlineConfig::builder().timeout(Duration::from_secs(2)).build().unwrap();
/// let layer = DeadlineLayer::from_config(&config).unwrap();
/// assert_eq!(layer.handle().name(), "default");
///
/// // for HTTP requests, with the deadline read from and written into a header too
/// let config = DeadlineConfig::builder().header("grpc-timeout").build().unwrap();
/// let layer = DeadlineLayer::builder(config)
///     .name("payments")
///     .carrier(HttpRequest)
///     .build()
///     .unwrap();
/// assert_eq!(layer.handle().name(), "payments");
/// ```
#[derive(Debug, Clone)]
pub struct DeadlineLayer<C = AnyRequest> {
    handle: DeadlineHandle,
    carrier: C,
}

impl DeadlineLayer {
    /// A layer named `"default"` for requests of any type ([`AnyRequest`]), or an error
    /// naming the config field it refuses.
    pub fn from_config(config: &DeadlineConfig) -> Result<Self, ConfigError> {
        Self::builder(config.clone()).build()
    }

    /// A builder for a layer: [`name`](DeadlineLayerBuilder::name),
    /// [`carrier`](DeadlineLayerBuilder::carrier).
    pub fn builder(config: DeadlineConfig) -> DeadlineLayerBuilder {
        DeadlineLayerBuilder {
            config,
            name: DEFAULT_NAME.to_owned(),
            carrier: AnyRequest,
        }
    }
}

impl<C> DeadlineLayer<C> {
    /// The shared stage: [`snapshot`](DeadlineHandle::snapshot),
    /// [`reconfigure`](DeadlineHandle::reconfigure).
    pub fn handle(&self) -> &DeadlineHandle {
        &self.handle
    }

    /// A [`PropagateDeadlineLayer`] sharing this stage's header, `propagate` switch and
    /// carrier: put it below a retry stage so that every attempt carries the time left
    /// when it is sent.
    pub fn propagate_layer(&self) -> PropagateDeadlineLayer<C>
    where
        C: Clone,
    {
        PropagateDeadlineLayer::with_carrier(self.handle.clone(), self.carrier.clone())
    }
}

impl<S, C: Clone> Layer<S> for DeadlineLayer<C> {
    type Service = Deadline<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline::new(inner, self.handle.clone(), self.carrier.clone())
    }
}

/// Builds a [`DeadlineLayer`], from [`DeadlineLayer::builder`]: what a config file cannot
/// say.
#[derive(Debug, Clone)]
#[must_use = "call `build()` to get the layer"]
pub struct DeadlineLayerBuilder<C = AnyRequest> {
    config: DeadlineConfig,
    name: String,
    carrier: C,
}

impl<C> DeadlineLayerBuilder<C> {
    /// Sets the policy name: the `name` label of the stage's metrics, and its log events
    /// (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Reads and writes requests' deadlines with `carrier` (default [`AnyRequest`], which
    /// reads and writes nothing; [`HttpRequest`](crate::HttpRequest) for
    /// `http::Request`, or a [`Carrier`](crate::Carrier) of your own).
    pub fn carrier<C2>(self, carrier: C2) -> DeadlineLayerBuilder<C2> {
        DeadlineLayerBuilder {
            config: self.config,
            name: self.name,
            carrier,
        }
    }

    /// The layer, or an error naming the config field it refuses.
    pub fn build(self) -> Result<DeadlineLayer<C>, ConfigError> {
        Ok(DeadlineLayer {
            handle: DeadlineHandle::new(self.name, &self.config)?,
            carrier: self.carrier,
        })
    }
}
