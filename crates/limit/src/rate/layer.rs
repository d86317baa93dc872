//! [`RateLimitLayer`] and its builder.

use std::fmt;
use std::marker::PhantomData;

use tower_layer::Layer;
use tower_prism_core::config::ConfigError;
use tower_prism_core::HealthSignal;

use super::config::RateLimitConfig;
use super::headers::{HttpHeaders, NoHeaders};
use super::http_key::HttpKey;
use super::limiter::RateLimiter;
use super::policy::{KeyBy, PriorityBy, SamePriority, UnitWeight, Unkeyed, WeightBy};
use super::service::RateLimit;
use crate::backend::LocalBackend;

/// Applies a rate limit to a service. Every service this layer makes (and every clone of
/// the layer) shares one limiter, reached with [`handle`](Self::handle).
///
/// The type parameters are those of the [`RateLimit`] services it makes: the key,
/// priority and weight functions, and the [`RateHeaders`](super::RateHeaders) `H`.
pub struct RateLimitLayer<K = Unkeyed, P = SamePriority, W = UnitWeight, H = NoHeaders> {
    limiter: RateLimiter,
    key: K,
    priority: P,
    weight: W,
    refund_shed: bool,
    headers: PhantomData<fn() -> H>,
}

impl<K: Clone, P: Clone, W: Clone, H> Clone for RateLimitLayer<K, P, W, H> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            priority: self.priority.clone(),
            weight: self.weight.clone(),
            refund_shed: self.refund_shed,
            headers: PhantomData,
        }
    }
}

impl<K: fmt::Debug, P: fmt::Debug, W: fmt::Debug, H> fmt::Debug for RateLimitLayer<K, P, W, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("key", &self.key)
            .field("priority", &self.priority)
            .field("weight", &self.weight)
            .field("refund_shed", &self.refund_shed)
            .field("headers", &std::any::type_name::<H>())
            .finish()
    }
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
            refund_shed: false,
            headers: PhantomData,
        }
    }
}

impl<K, P, W, H> RateLimitLayer<K, P, W, H> {
    /// The shared limiter: [`snapshot`](RateLimiter::snapshot),
    /// [`reconfigure`](RateLimiter::reconfigure).
    pub fn handle(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Whether a request that a [`ConcurrencyLimit`](crate::concurrency::ConcurrencyLimit)
    /// below sheds at once (in its `call`) gives its tokens back (default off, as in
    /// governor, where an admission spends its tokens whatever happens next).
    ///
    /// On, the rate counts the requests sent on: with the rate set to the upstream's
    /// capacity and a concurrency limit below, none of that capacity is spent on requests
    /// the concurrency limit refused. A retry between the two hides the shedding (it may
    /// send the request again). `ReliabilityLayer` turns it on when its policy has both
    /// stages. It costs a check after each admitted call, and the inner future is then
    /// built in a temporary and copied into this stage's future.
    pub fn refund_shed(mut self, on: bool) -> Self {
        self.refund_shed = on;
        self
    }

    /// Gives each distinct key (from the closure) its own bucket of the same shape.
    pub fn key_fn<F>(self, key: F) -> RateLimitLayer<KeyBy<F>, P, W, H> {
        self.key(KeyBy(key))
    }

    /// Picks each request's bucket with a [`KeyFn`](super::KeyFn), such as an
    /// [`HttpKey`].
    pub fn key<K2>(self, key: K2) -> RateLimitLayer<K2, P, W, H> {
        RateLimitLayer {
            limiter: self.limiter,
            key,
            priority: self.priority,
            weight: self.weight,
            refund_shed: self.refund_shed,
            headers: PhantomData,
        }
    }

    /// Orders waiting requests by the closure's priority (higher first, FIFO within one).
    pub fn priority_fn<F>(self, priority: F) -> RateLimitLayer<K, PriorityBy<F>, W, H> {
        RateLimitLayer {
            limiter: self.limiter,
            key: self.key,
            priority: PriorityBy(priority),
            weight: self.weight,
            refund_shed: self.refund_shed,
            headers: PhantomData,
        }
    }

    /// Charges each request the closure's number of tokens.
    pub fn weight_fn<F>(self, weight: F) -> RateLimitLayer<K, P, WeightBy<F>, H> {
        RateLimitLayer {
            limiter: self.limiter,
            key: self.key,
            priority: self.priority,
            weight: WeightBy(weight),
            refund_shed: self.refund_shed,
            headers: PhantomData,
        }
    }

    /// Writes rate-limit headers with `H2` ([`HttpHeaders`] for HTTP responses): on
    /// admitted responses when the config's `headers` is set, and on rejections always.
    pub fn headers<H2>(self) -> RateLimitLayer<K, P, W, H2> {
        RateLimitLayer {
            limiter: self.limiter,
            key: self.key,
            priority: self.priority,
            weight: self.weight,
            refund_shed: self.refund_shed,
            headers: PhantomData,
        }
    }
}

impl<S, K: Clone, P: Clone, W: Clone, H> Layer<S> for RateLimitLayer<K, P, W, H> {
    type Service = RateLimit<S, K, P, W, H>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_parts(
            inner,
            self.limiter.clone(),
            self.key.clone(),
            self.priority.clone(),
            self.weight.clone(),
        )
        .with_refund_shed(self.refund_shed)
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

    /// Validates and builds the layer. A config with a `key` is refused: this layer's
    /// requests are of any type, so it cannot read an HTTP key; use
    /// [`build_http`](Self::build_http), or [`key_fn`](RateLimitLayer::key_fn) on a
    /// config without one.
    pub fn build(self) -> Result<RateLimitLayer, ConfigError> {
        if let Some(key) = &self.config.key {
            return Err(ConfigError::new(
                "key",
                format!("{key:?}"),
                "this stack cannot read keys off its requests: use an HTTP profile, \
                 `build_http()`, or a key function in code",
            ));
        }
        self.build_unchecked()
    }

    /// Validates and builds a layer for `http::Request`s: keyed by the config's `key`
    /// ([`HttpKey`]; one shared bucket without one), with rate-limit headers
    /// ([`HttpHeaders`]) on rejections, and on admitted responses when `headers` is set.
    pub fn build_http(
        self,
    ) -> Result<RateLimitLayer<HttpKey, SamePriority, UnitWeight, HttpHeaders>, ConfigError> {
        let key = HttpKey::from_config(self.config.key.as_ref())?;
        Ok(self.build_unchecked()?.key(key).headers::<HttpHeaders>())
    }

    fn build_unchecked(self) -> Result<RateLimitLayer, ConfigError> {
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
