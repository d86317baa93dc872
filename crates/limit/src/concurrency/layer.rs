//! [`ConcurrencyLimitLayer`] and its builder.

use tower_layer::Layer;
use tower_prism_core::config::ConfigError;
use tower_prism_core::DefaultClassifier;

use super::config::ConcurrencyConfig;
use super::limiter::ConcurrencyLimiter;
use super::service::ConcurrencyLimit;

/// Applies an adaptive concurrency limit. Every service this layer makes (and every clone
/// of the layer) shares one limiter, reached with [`handle`](Self::handle).
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer<C = DefaultClassifier> {
    limiter: ConcurrencyLimiter,
    classify: C,
}

impl ConcurrencyLimitLayer {
    /// A layer from a config, validated, named `"default"`, classifying results with
    /// [`DefaultClassifier`].
    pub fn from_config(config: &ConcurrencyConfig) -> Result<Self, ConfigError> {
        Self::builder(config.clone()).build()
    }

    /// A builder for what a config file cannot say: the [`name`](ConcurrencyLimitLayerBuilder::name)
    /// and how results are [classified](ConcurrencyLimitLayerBuilder::classify).
    pub fn builder(config: ConcurrencyConfig) -> ConcurrencyLimitLayerBuilder {
        ConcurrencyLimitLayerBuilder {
            config,
            name: "default".to_owned(),
            classify: DefaultClassifier,
        }
    }
}

impl<C> ConcurrencyLimitLayer<C> {
    /// The shared limiter: [`snapshot`](ConcurrencyLimiter::snapshot),
    /// [`reconfigure`](ConcurrencyLimiter::reconfigure).
    pub fn handle(&self) -> &ConcurrencyLimiter {
        &self.limiter
    }
}

impl<S, C: Clone> Layer<S> for ConcurrencyLimitLayer<C> {
    type Service = ConcurrencyLimit<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit::with_classify(inner, self.limiter.clone(), self.classify.clone())
    }
}

/// Builds a [`ConcurrencyLimitLayer`] from a [`ConcurrencyConfig`] and what only code can
/// give; [`build`](Self::build) validates. From [`ConcurrencyLimitLayer::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ConcurrencyLimitLayerBuilder<C = DefaultClassifier> {
    config: ConcurrencyConfig,
    name: String,
    classify: C,
}

impl<C> ConcurrencyLimitLayerBuilder<C> {
    /// The policy name for metrics and logs (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Classifies results with `classify` (e.g.
    /// [`HttpClassifier`](tower_prism_core::HttpClassifier) or a closure) instead of "every
    /// `Err` is a failure".
    pub fn classify<C2>(self, classify: C2) -> ConcurrencyLimitLayerBuilder<C2> {
        ConcurrencyLimitLayerBuilder {
            config: self.config,
            name: self.name,
            classify,
        }
    }

    /// Validates and builds the layer (and its limiter).
    pub fn build(self) -> Result<ConcurrencyLimitLayer<C>, ConfigError> {
        let limiter = ConcurrencyLimiter::new(self.name, self.config)?;
        Ok(ConcurrencyLimitLayer {
            limiter,
            classify: self.classify,
        })
    }
}
