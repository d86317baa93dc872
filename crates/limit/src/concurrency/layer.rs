//! [`ConcurrencyLimitLayer`] and its builder.

use std::time::Duration;

use tower_layer::Layer;
use tower_prism_core::config::ConfigError;
use tower_prism_core::DefaultClassifier;

use super::config::{AimdConfig, ConcurrencyConfig, GradientConfig, LimitAlgorithm};
use super::limiter::ConcurrencyLimiter;
use super::service::ConcurrencyLimit;

/// Applies an adaptive concurrency limit. Every service this layer makes shares one
/// limiter.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer<C = DefaultClassifier> {
    limiter: ConcurrencyLimiter,
    classifier: C,
}

impl ConcurrencyLimitLayer {
    /// A builder, starting from [`ConcurrencyConfig::default`].
    pub fn builder() -> ConcurrencyLimitBuilder {
        ConcurrencyLimitBuilder::from_config(ConcurrencyConfig::default())
    }

    /// A layer from a config (validated), named `"default"`.
    pub fn from_config(config: &ConcurrencyConfig) -> Result<Self, ConfigError> {
        ConcurrencyLimitBuilder::from_config(config.clone()).build()
    }

    /// A layer over an existing limiter (e.g. one shared by several routes).
    pub fn with_limiter(limiter: ConcurrencyLimiter) -> Self {
        ConcurrencyLimitLayer {
            limiter,
            classifier: DefaultClassifier,
        }
    }
}

impl<C> ConcurrencyLimitLayer<C> {
    /// The shared limiter: [`snapshot`](ConcurrencyLimiter::snapshot),
    /// [`reconfigure`](ConcurrencyLimiter::reconfigure).
    pub fn limiter(&self) -> &ConcurrencyLimiter {
        &self.limiter
    }

    /// Classifies results with `classifier` (e.g. [`HttpClassifier`](tower_prism_core::HttpClassifier)
    /// or a closure) instead of "every `Err` is a failure".
    pub fn classifier<C2>(self, classifier: C2) -> ConcurrencyLimitLayer<C2> {
        ConcurrencyLimitLayer {
            limiter: self.limiter,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for ConcurrencyLimitLayer<C> {
    type Service = ConcurrencyLimit<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit::with_classifier(inner, self.limiter.clone(), self.classifier.clone())
    }
}

/// Builds a [`ConcurrencyLimitLayer`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitBuilder {
    config: ConcurrencyConfig,
    name: String,
}

impl ConcurrencyLimitBuilder {
    /// Starts from `config`.
    pub fn from_config(config: ConcurrencyConfig) -> Self {
        ConcurrencyLimitBuilder {
            config,
            name: "default".to_owned(),
        }
    }

    /// The policy name for metrics and logs (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The limit to start from.
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.config.initial_limit = limit;
        self
    }

    /// The bounds the limit moves within.
    pub fn limits(mut self, min: u32, max: u32) -> Self {
        self.config.min_limit = min;
        self.config.max_limit = max;
        self
    }

    /// Lets a request over the limit wait this long for a permit instead of failing at once.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = Some(wait);
        self
    }

    /// Moves the limit by AIMD.
    pub fn aimd(mut self, aimd: AimdConfig) -> Self {
        self.config.algorithm = LimitAlgorithm::Aimd(aimd);
        self
    }

    /// Moves the limit by the latency gradient.
    pub fn gradient(mut self, gradient: GradientConfig) -> Self {
        self.config.algorithm = LimitAlgorithm::Gradient(gradient);
        self
    }

    /// Validates and builds the layer (and its limiter).
    pub fn build(self) -> Result<ConcurrencyLimitLayer, ConfigError> {
        let limiter = ConcurrencyLimiter::new(self.name, self.config)?;
        Ok(ConcurrencyLimitLayer::with_limiter(limiter))
    }
}
