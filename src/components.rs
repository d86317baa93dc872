//! Where the facade meets the component crates: their configs, layers, services, errors
//! and reconfigure calls. Everything that depends on a component's API sits here, so the
//! rest of the facade is written against these few names.

use tower_prism_core::{ConfigError, HealthSignal};

use crate::profile::Profile;

pub use tower_prism_balance::BalanceConfig;
pub use tower_prism_breaker::BreakerConfig;
pub use tower_prism_limit::concurrency::ConcurrencyConfig;
pub use tower_prism_limit::rate::RateLimitConfig;
pub use tower_prism_retry::RetryConfig;

// ---------------------------------------------------------------- rate limit

pub(crate) type RateLimitLayer = tower_prism_limit::rate::RateLimitLayer;
/// The rate-limit stage's service.
pub type RateLimitService<S> = tower_prism_limit::rate::RateLimit<S>;

pub(crate) fn rate_limit_layer(
    name: &str,
    config: &RateLimitConfig,
    health: &HealthSignal,
) -> Result<RateLimitLayer, ConfigError> {
    RateLimitLayer::builder(config.clone())
        .name(name)
        .health(health.clone())
        .build()
}

pub(crate) fn reconfigure_rate_limit(
    layer: &RateLimitLayer,
    config: &RateLimitConfig,
) -> Result<(), ConfigError> {
    layer.handle().reconfigure(config)
}

// ---------------------------------------------------------------- concurrency limit

pub(crate) type ConcurrencyLayer<P> =
    tower_prism_limit::concurrency::ConcurrencyLimitLayer<<P as Profile>::Classify>;
/// The concurrency-limit stage's service.
pub type ConcurrencyService<S, P> =
    tower_prism_limit::concurrency::ConcurrencyLimit<S, <P as Profile>::Classify>;

pub(crate) fn concurrency_layer<P: Profile>(
    name: &str,
    config: &ConcurrencyConfig,
    profile: &P,
) -> Result<ConcurrencyLayer<P>, ConfigError> {
    tower_prism_limit::concurrency::ConcurrencyLimitLayer::builder(config.clone())
        .name(name)
        .classify(profile.classify())
        .build()
}

pub(crate) fn reconfigure_concurrency<C>(
    layer: &tower_prism_limit::concurrency::ConcurrencyLimitLayer<C>,
    config: &ConcurrencyConfig,
) -> Result<(), ConfigError> {
    layer.handle().reconfigure(config)
}

// ---------------------------------------------------------------- breaker

pub(crate) type BreakerLayer<P> =
    tower_prism_breaker::CircuitBreakerLayer<<P as Profile>::Classify>;
/// The breaker stage's service.
pub type BreakerService<S, P> = tower_prism_breaker::CircuitBreaker<S, <P as Profile>::Classify>;

pub(crate) fn validate_breaker(config: &BreakerConfig) -> Result<(), ConfigError> {
    config.validate()
}

pub(crate) fn breaker_layer<P: Profile>(
    name: &str,
    config: &BreakerConfig,
    health: &HealthSignal,
    profile: &P,
) -> Result<BreakerLayer<P>, ConfigError> {
    tower_prism_breaker::CircuitBreakerLayer::builder(config.clone())
        .name(name)
        .classify(profile.classify())
        .health(health.clone())
        // An error that opens the circuit and says how long to wait (a balancer with no
        // healthy endpoint, an inner rate limiter) sets the open wait; a response's
        // `Retry-After` does through the HTTP profile's classifier.
        .retry_after_hint(crate::error::retry_after_hint)
        .build()
}

pub(crate) fn check_breaker<C>(
    layer: &tower_prism_breaker::CircuitBreakerLayer<C>,
    config: &BreakerConfig,
) -> Result<(), ConfigError> {
    layer.handle().check(config)
}

pub(crate) fn reconfigure_breaker<C>(
    layer: &tower_prism_breaker::CircuitBreakerLayer<C>,
    config: &BreakerConfig,
) -> Result<(), ConfigError> {
    layer.handle().reconfigure(config)
}

// ---------------------------------------------------------------- retry

pub(crate) type RetryLayer<P> = tower_prism_retry::RetryLayer<
    <P as Profile>::Classify,
    <P as Profile>::Replay,
    <P as Profile>::Hint,
>;
/// The retry stage's service.
pub type RetryService<S, P> = tower_prism_retry::Retry<
    S,
    <P as Profile>::Classify,
    <P as Profile>::Replay,
    <P as Profile>::Hint,
>;

pub(crate) fn validate_retry(config: &RetryConfig) -> Result<(), ConfigError> {
    config.validate()
}

pub(crate) fn retry_layer<P: Profile>(
    name: &str,
    config: &RetryConfig,
    health: &HealthSignal,
    profile: &P,
) -> Result<RetryLayer<P>, ConfigError> {
    tower_prism_retry::RetryLayer::builder(config.clone())
        .name(name)
        .health(health.clone())
        // Our own rejections below the retry stage (a balancer with no healthy endpoint,
        // an inner rate limiter) say how long to wait.
        .retry_after_hint(crate::error::retry_after_hint)
        .classify(profile.classify())
        .clone_request(profile.replay())
        .response_hint(profile.hint())
        .build()
}

pub(crate) fn reconfigure_retry<C, R, H>(
    layer: &tower_prism_retry::RetryLayer<C, R, H>,
    config: &RetryConfig,
) -> Result<(), ConfigError> {
    layer.handle().reconfigure(config)
}

// ---------------------------------------------------------------- balance

/// A running balancer, as the policy's reload sees it: check a config without applying
/// it, then apply it.
pub(crate) trait ReloadBalancer: Send + Sync {
    /// Whether the balancer would accept `config`; changes nothing.
    fn check(&self, config: &BalanceConfig) -> Result<(), ConfigError>;
    /// Applies `config` (already checked).
    fn apply(&self, config: &BalanceConfig) -> Result<(), ConfigError>;
}

impl<K, S> ReloadBalancer for tower_prism_balance::BalanceHandle<K, S>
where
    tower_prism_balance::BalanceHandle<K, S>: Send + Sync,
{
    fn check(&self, config: &BalanceConfig) -> Result<(), ConfigError> {
        tower_prism_balance::BalanceHandle::check(self, config)
    }

    fn apply(&self, config: &BalanceConfig) -> Result<(), ConfigError> {
        self.reconfigure(config)
    }
}
