//! [`RateLimitLayer`] and its builder.

use std::time::Duration;

use tower_layer::Layer;
use tower_prism_core::config::ConfigError;
use tower_prism_core::Clock;
use tower_prism_core::HealthSignal;

use crate::adaptive::AdaptiveConfig;
use crate::backend::{Backend, LocalBackend};
use crate::config::RateLimitConfig;
use crate::limiter::RateLimiter;
use crate::policy::{KeyBy, PriorityBy, SamePriority, UnitWeight, Unkeyed, WeightBy};
use crate::service::RateLimit;

/// Applies a rate limit to a service. Every service this layer makes shares one limiter.
#[derive(Debug, Clone)]
pub struct RateLimitLayer<K = Unkeyed, P = SamePriority, W = UnitWeight> {
    limiter: RateLimiter,
    key: K,
    priority: P,
    weight: W,
}

impl RateLimitLayer {
    /// A builder; set at least [`rate`](RateLimitBuilder::rate).
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder::from_config(RateLimitConfig::new(0, Duration::from_secs(1)))
    }

    /// A layer from a validated config. A config with an `adaptive` section needs a health
    /// signal: use [`RateLimitBuilder::from_config`] and [`RateLimitBuilder::health_signal`].
    pub fn from_config(config: &RateLimitConfig) -> Result<Self, ConfigError> {
        RateLimitBuilder::from_config(config.clone()).build()
    }

    /// A layer over an existing limiter (e.g. one shared by several routes).
    pub fn with_limiter(limiter: RateLimiter) -> Self {
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
    pub fn limiter(&self) -> &RateLimiter {
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

/// Builds a [`RateLimitLayer`]; [`build`](Self::build) validates everything.
#[derive(Debug)]
pub struct RateLimitBuilder {
    config: RateLimitConfig,
    name: String,
    health: Option<HealthSignal>,
    backend: Option<Box<dyn Backend>>,
}

impl RateLimitBuilder {
    /// Starts from a config (e.g. read from a file).
    pub fn from_config(config: RateLimitConfig) -> Self {
        RateLimitBuilder {
            config,
            name: "default".to_owned(),
            health: None,
            backend: None,
        }
    }

    /// `rate` tokens per `period`.
    pub fn rate(mut self, rate: u32, period: Duration) -> Self {
        self.config.rate = rate;
        self.config.period = period;
        self
    }

    /// Tokens the bucket holds when full (default: the rate).
    pub fn burst(mut self, burst: u32) -> Self {
        self.config.burst = Some(burst);
        self
    }

    /// Lets up to `size` requests wait up to `max_wait` for a token.
    pub fn queue(mut self, size: usize, max_wait: Duration) -> Self {
        self.config.queue_size = size;
        self.config.max_wait = Some(max_wait);
        self
    }

    /// Caps the keys a keyed limiter tracks.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.config.max_keys = max_keys;
        self
    }

    /// Forgets a key once its bucket has been full this long.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.config.idle_timeout = idle;
        self
    }

    /// Where the buckets read the time (default [`Clock::Tokio`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// The policy name for metrics and logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes the rate follow `health` within the config's bounds.
    pub fn adaptive(mut self, health: HealthSignal, config: AdaptiveConfig) -> Self {
        self.config.adaptive = Some(config);
        self.health = Some(health);
        self
    }

    /// The health signal for a config's `adaptive` section.
    pub fn health_signal(mut self, health: HealthSignal) -> Self {
        self.health = Some(health);
        self
    }

    /// Decides admissions in another backend than the local buckets.
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Box::new(backend));
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
                    "needs a health signal: call .health_signal(..) or .adaptive(..)",
                ))
            }
            (None, _) => None,
        };
        let backend = self.backend.unwrap_or_else(|| {
            Box::new(LocalBackend::new(
                self.config.quota(),
                self.config.max_keys,
                u64::try_from(self.config.idle_timeout.as_nanos()).unwrap_or(u64::MAX),
            ))
        });
        let limiter = RateLimiter::build(self.name, &self.config, backend, adaptive);
        Ok(RateLimitLayer::with_limiter(limiter))
    }
}
