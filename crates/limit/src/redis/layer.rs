//! [`RedisRateLimitLayer`] and its builder.

use std::sync::Arc;

use tower_layer::Layer;
use tower_prism_core::config::ConfigError;

use super::config::RedisConfig;
use super::limiter::RedisRateLimiter;
use super::policy::RedisKeyBy;
use super::service::RedisRateLimit;
use super::state::State;
use crate::rate::Unkeyed;

/// A tower `Layer` that rate limits with a limit shared through Redis. Every service it makes,
/// and every instance using the same Redis, prefix and name, shares the limit.
#[derive(Debug, Clone)]
pub struct RedisRateLimitLayer<K = Unkeyed> {
    limiter: RedisRateLimiter,
    key: K,
}

impl RedisRateLimitLayer {
    /// A layer from a config, validated (without connecting), for the limit named
    /// `"default"`.
    pub fn from_config(config: &RedisConfig) -> Result<Self, ConfigError> {
        Self::builder(config.clone()).build()
    }

    /// A builder for what a config file cannot say: the limit's
    /// [`name`](RedisRateLimitLayerBuilder::name).
    pub fn builder(config: RedisConfig) -> RedisRateLimitLayerBuilder {
        RedisRateLimitLayerBuilder {
            config,
            name: "default".to_owned(),
        }
    }
}

impl<K> RedisRateLimitLayer<K> {
    /// The shared limiter: [`snapshot`](RedisRateLimiter::snapshot),
    /// [`acquire`](RedisRateLimiter::acquire).
    pub fn handle(&self) -> &RedisRateLimiter {
        &self.limiter
    }

    /// Gives each distinct key (from the closure, e.g. an API key) its own bucket: the Redis
    /// key `{<prefix>:<name>:<key>}`, with a key longer than
    /// [`RedisConfig::MAX_KEY_BYTES`] replaced by `~sha1:` and its SHA-1 in hex.
    pub fn key_fn<F>(self, key: F) -> RedisRateLimitLayer<RedisKeyBy<F>> {
        RedisRateLimitLayer {
            limiter: self.limiter,
            key: RedisKeyBy(key),
        }
    }
}

impl<S, K: Clone> Layer<S> for RedisRateLimitLayer<K> {
    type Service = RedisRateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RedisRateLimit::from_parts(inner, self.limiter.clone(), self.key.clone())
    }
}

/// Builds a [`RedisRateLimitLayer`] from a [`RedisConfig`] and the limit's name;
/// [`build`](Self::build) validates. From [`RedisRateLimitLayer::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisRateLimitLayerBuilder {
    config: RedisConfig,
    name: String,
}

impl RedisRateLimitLayerBuilder {
    /// The limit's name (default `"default"`): the metrics label, and part of the Redis
    /// key, so every instance using the same Redis, prefix and name shares the limit.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Validates the configuration and the URL (without connecting: the connection is made
    /// on first use, so a limiter can start while Redis is down).
    pub fn build(self) -> Result<RedisRateLimitLayer, ConfigError> {
        let state = State::new(self.name, self.config)?;
        Ok(RedisRateLimitLayer {
            limiter: RedisRateLimiter {
                state: Arc::new(state),
            },
            key: Unkeyed,
        })
    }
}
