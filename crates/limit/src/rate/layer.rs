//! [`RateLimitLayer`] and its builder.

use tower_layer::Layer;
use tower_prism_core::config::ConfigError;
use tower_prism_core::HealthSignal;

use super::config::RateLimitConfig;
use super::limiter::RateLimiter;
use super::policy::{KeyBy, PriorityBy, SamePriority, UnitWeight, Unkeyed, WeightBy};
use super::service::RateLimit;
use crate::backend::LocalBackend;

/// Applies a rate limit to a service. Every service this layer makes (and every clone of
/// the layer) shares one limiter, reached with [`handle`](Self::handle).
#[derive(Debug, Clone)]
pub struct RateLimitLayer<K = Unkeyed, P = SamePriority, W = UnitWeight> {
    limiter: RateLimiter,
    key: K,
    priority: P,
    weight: W,
}

impl RateLimitLayer {
    /// A layer from a config, validated. A config with an `adaptive` section needs a
    /// health signal: use [`builder`](Self::builder) and
    /// [`health`](RateLimitLayerBuilder::health).
    pub fn from_config(config: &RateLimitConfig) -> Result<Self, ConfigError> {
        Self::builder(config.clone()).build()
    }

    /// A builder for what a config file cannot say: the [`name`](RateLimitLayerBuilder::name)
    /// and the [`health`](RateLimitLayerBuilder::health) signal of an adaptive rate.
    pub fn builder(config: RateLimitConfig) -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            config,
            name: "default".to_owned(),
            health: None,
        }
    }

    fn with_limiter(limiter: RateLimiter) -> Self {
        RateLimitLayer {
            limiter,
            key: Unkeyed,
            priority: SamePriority,
            weight: UnitWeight,
        }
    }
}

impl<K, P, W> RateLimitLayer<K, P, W> {
    /// The shared limiter: [`snapshot`](RateLimiter::snapshot),
    /// [`reconfigure`](RateLimiter::reconfigure).
    pub fn handle(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Gives each distinct key (from the closure) its own bucket of the same shape.
    pub fn key_fn<F>(self, key: F) -> RateLimitLayer<KeyBy<F>, P, W> {
        RateLimitLayer {
            limiter: self.limiter,
            key: KeyBy(key),
            priority: self.priority,
            weight: self.weight,
        }
    }

    /// Orders waiting requests by the closure's priority (higher first, FIFO within one).
    pub fn priority_fn<F>(self, priority: F) -> RateLimitLayer<K, PriorityBy<F>, W> {
        RateLimitLayer {
            limiter: self.limiter,
            key: self.key,
            priority: PriorityBy(priority),
            weight: self.weight,
        }
    }

    /// Charges each request the closure's number of tokens.
    pub fn weight_fn<F>(self, weight: F) -> RateLimitLayer<K, P, WeightBy<F>> {
        RateLimitLayer {
            limiter: self.limiter,
            key: self.key,
            priority: self.priority,
            weight: WeightBy(weight),
        }
    }
}

impl<S, K: Clone, P: Clone, W: Clone> Layer<S> for RateLimitLayer<K, P, W> {
    type Service = RateLimit<S, K, P, W>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_parts(
            inner,
            self.limiter.clone(),
            self.key.clone(),
            self.priority.clone(),
            self.weight.clone(),
        )
    }
}

/// Builds a [`RateLimitLayer`] from a [`RateLimitConfig`] and what only code can give;
/// [`build`](Self::build) validates everything. From [`RateLimitLayer::builder`].
#[derive(Debug)]
#[must_use]
pub struct RateLimitLayerBuilder {
    config: RateLimitConfig,
    name: String,
    health: Option<HealthSignal>,
}

impl RateLimitLayerBuilder {
    /// The policy name for metrics and logs (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The health signal an `adaptive` rate follows (required with one; ignored without).
    pub fn health(mut self, health: HealthSignal) -> Self {
        self.health = Some(health);
        self
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer, ConfigError> {
        self.config.validate()?;
        let adaptive = match (self.config.adaptive.clone(), self.health) {
            (Some(adaptive), Some(health)) => Some((health.subscribe(), adaptive)),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "adaptive",
                    "(section)",
                    "needs a health signal: call .health(..) on the layer builder",
                ))
            }
            (None, _) => None,
        };
        let backend = LocalBackend::new(
            self.config.quota(),
            self.config.max_keys,
            tower_prism_core::internal::nanos(self.config.idle_timeout),
        );
        let limiter = RateLimiter::build(self.name, &self.config, backend, adaptive);
        Ok(RateLimitLayer::with_limiter(limiter))
    }
}
