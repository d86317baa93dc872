//! Where the facade meets the component crates: their configs, layers, services, errors
//! and reconfigure calls. Everything that depends on a component's API sits here, so the
//! rest of the facade is written against these few names.

use std::error::Error as StdError;
use std::time::Duration;

use tower_layer::{Identity, Layer};
use tower_prism_core::{ConfigError, HealthSignal};

use crate::ErrorKind;

pub use tower_prism_balance::BalanceConfig;
pub use tower_prism_ratelimit::RateLimitConfig;

/// Placeholder config of a stage whose crate has not landed yet: building a layer with it
/// fails with a [`ConfigError`] saying so.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {}
impl Pending {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
/// Breaker settings.
pub type BreakerConfig = Pending;
/// Retry settings.
pub type RetryConfig = Pending;

// ---------------------------------------------------------------- rate limit

pub(crate) type RateLimitLayer = tower_prism_ratelimit::RateLimitLayer;
/// The rate-limit stage's service.
pub type RateLimitService<S> = tower_prism_ratelimit::RateLimit<S>;

pub(crate) fn rate_limit_layer(
    name: &str,
    config: &RateLimitConfig,
    health: &HealthSignal,
) -> Result<RateLimitLayer, ConfigError> {
    tower_prism_ratelimit::RateLimitBuilder::from_config(config.clone())
        .name(name)
        .health_signal(health.clone())
        .build()
}

pub(crate) fn reconfigure_rate_limit(
    layer: &RateLimitLayer,
    config: &RateLimitConfig,
) -> Result<(), ConfigError> {
    layer.limiter().reconfigure(config)
}

// ---------------------------------------------------------------- breaker

pub(crate) type BreakerLayer = Identity;
/// The breaker stage's service.
pub type BreakerService<S> = S;

pub(crate) fn validate_breaker(_config: &BreakerConfig) -> Result<(), ConfigError> {
    Ok(()) // a BreakerConfig is valid by construction
}

pub(crate) fn breaker_layer(
    _name: &str,
    _config: &BreakerConfig,
    _health: &HealthSignal,
) -> Result<BreakerLayer, ConfigError> {
    Err(ConfigError::new(
        "(section)",
        "circuit_breaker",
        "the circuit breaker stage is not available in this build yet",
    ))
}

pub(crate) fn reconfigure_breaker(
    _layer: &BreakerLayer,
    _config: &BreakerConfig,
) -> Result<(), ConfigError> {
    Ok(())
}

// ---------------------------------------------------------------- retry

pub(crate) type RetryLayer = Identity;
/// The retry stage's service.
pub type RetryService<S> = S;

pub(crate) fn validate_retry(config: &RetryConfig) -> Result<(), ConfigError> {
    config.validate()
}

pub(crate) fn retry_layer(
    _name: &str,
    _config: &RetryConfig,
    _health: &HealthSignal,
) -> Result<RetryLayer, ConfigError> {
    Err(ConfigError::new(
        "(section)",
        "retry",
        "the retry stage is not available in this build yet",
    ))
}

pub(crate) fn reconfigure_retry(
    _layer: &RetryLayer,
    _config: &RetryConfig,
) -> Result<(), ConfigError> {
    Ok(())
}

// ---------------------------------------------------------------- errors

/// Recognises a component's rejection.
pub(crate) fn classify_error(
    e: &(dyn StdError + 'static),
) -> Option<(ErrorKind, Option<Duration>)> {
    if let Some(e) = e.downcast_ref::<tower_prism_ratelimit::Error>() {
        return Some((ErrorKind::RateLimited, e.retry_after()));
    }
    if let Some(tower_prism_balance::Error::NoHealthyEndpoint { .. }) =
        e.downcast_ref::<tower_prism_balance::Error>()
    {
        return Some((ErrorKind::NoHealthyEndpoint, None));
    }
    None
}

#[allow(dead_code)]
fn _assert_layers<S>(l: &RateLimitLayer, s: S) -> RateLimitService<S> {
    l.layer(s)
}
