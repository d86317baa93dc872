//! Where the facade meets the component crates: their configs, layers, services, errors
//! and reconfigure calls. Everything that depends on a component's API sits here, so the
//! rest of the facade is written against these few names.

use std::any::TypeId;

use tower_prism_core::{ConfigError, HealthSignal};
use tower_prism_deadline::AnyRequest;
use tower_prism_limit::rate::NoHeaders;

use crate::profile::Profile;

pub use tower_prism_balance::BalanceConfig;
pub use tower_prism_breaker::BreakerConfig;
pub use tower_prism_deadline::DeadlineConfig;
pub use tower_prism_fault::FaultConfig;
pub use tower_prism_limit::concurrency::ConcurrencyConfig;
pub use tower_prism_limit::rate::RateLimitConfig;
pub use tower_prism_retry::RetryConfig;

// ---------------------------------------------------------------- rate limit

pub(crate) type RateLimitLayer<P> = tower_prism_limit::rate::RateLimitLayer<
    <P as Profile>::RateKey,
    tower_prism_limit::rate::SamePriority,
    tower_prism_limit::rate::UnitWeight,
    <P as Profile>::RateHeaders,
>;
/// The rate-limit stage's service: keyed and writing headers as the profile says.
pub type RateLimitService<S, P> = tower_prism_limit::rate::RateLimit<
    S,
    <P as Profile>::RateKey,
    tower_prism_limit::rate::SamePriority,
    tower_prism_limit::rate::UnitWeight,
    <P as Profile>::RateHeaders,
>;

/// The rate-limit stage: its key (`rate_limit.key`) read the profile's way, or refused
/// when the profile cannot read keys.
pub(crate) fn rate_limit_layer<P: Profile>(
    name: &str,
    config: &RateLimitConfig,
    health: &HealthSignal,
    profile: &P,
) -> Result<RateLimitLayer<P>, ConfigError> {
    check_rate_limit::<P>(config)?;
    let builder = tower_prism_limit::rate::RateLimitLayer::builder(config.clone())
        .name(name)
        .health(health.clone());
    profile.rate_limit(builder)
}

/// Refuses what `P`'s rate-limit stage would silently ignore: `headers` on a profile
/// whose stage writes none ([`NoHeaders`]). Checked at build and at reload, which may
/// switch `headers` on.
pub(crate) fn check_rate_limit<P: Profile>(config: &RateLimitConfig) -> Result<(), ConfigError> {
    if config.headers && TypeId::of::<P::RateHeaders>() == TypeId::of::<NoHeaders>() {
        return Err(ConfigError::new(
            "headers",
            true,
            "this profile writes no rate-limit headers (gRPC answers a rejection with \
             `RESOURCE_EXHAUSTED` and `grpc-retry-pushback-ms`, and has no convention for \
             them; other profiles' responses are not HTTP): remove it, or use `http()` or \
             `http_server()`",
        ));
    }
    Ok(())
}

pub(crate) fn reconfigure_rate_limit<K, Pr, W, H>(
    layer: &tower_prism_limit::rate::RateLimitLayer<K, Pr, W, H>,
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

// ---------------------------------------------------------------- deadline

pub(crate) type DeadlineLayer<P> = tower_prism_deadline::DeadlineLayer<<P as Profile>::Carrier>;
/// The deadline stage's service.
pub type DeadlineService<S, P> = tower_prism_deadline::Deadline<S, <P as Profile>::Carrier>;
/// The service below the retry stage that writes each attempt's time left.
pub type PropagateService<S, P> =
    tower_prism_deadline::PropagateDeadline<S, <P as Profile>::Carrier>;

pub(crate) fn deadline_layer<P: Profile>(
    name: &str,
    config: &DeadlineConfig,
    profile: &P,
) -> Result<DeadlineLayer<P>, ConfigError> {
    check_deadline::<P>(config)?;
    tower_prism_deadline::DeadlineLayer::builder(config.clone())
        .name(name)
        .carrier(profile.carrier())
        .build()
}

/// Refuses what `P`'s deadline stage would silently ignore: a `header` on a profile whose
/// carrier reads and writes none ([`AnyRequest`]). Checked at build and at reload, where
/// it says why before the running stage says the header cannot change.
pub(crate) fn check_deadline<P: Profile>(config: &DeadlineConfig) -> Result<(), ConfigError> {
    match &config.header {
        Some(header) if TypeId::of::<P::Carrier>() == TypeId::of::<AnyRequest>() => {
            Err(ConfigError::new(
                "header",
                header,
                "this profile reads and writes no request headers (only the timeout and a \
                 caller's deadline apply): remove it, or use an HTTP or gRPC profile",
            ))
        }
        _ => Ok(()),
    }
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

pub(crate) fn validate_retry(config: &RetryConfig) -> Result<(), ConfigError> {
    config.validate()
}

/// The retry config the stage runs under `profile`: `max_attempts`, and the attempts of
/// a hedged round, cut to the profile's cap, if any, with a warning when they are.
pub(crate) fn retry_config<P: Profile>(
    name: &str,
    config: &RetryConfig,
    profile: &P,
) -> RetryConfig {
    let mut config = config.clone();
    if let Some(cap) = profile.max_attempts_cap() {
        config.max_attempts = capped(name, "retry.max_attempts", config.max_attempts, cap);
        // A hedged round sends the attempt and its hedges: at most `cap` in all, as gRFC
        // A6 caps a hedging policy's `maxAttempts`.
        if let Some(hedge) = config.hedge.as_mut() {
            let most = cap.saturating_sub(1).max(1);
            hedge.max_hedged = capped(name, "retry.hedge.max_hedged", hedge.max_hedged, most);
        }
    }
    config
}

/// `value` of the policy's `field`, at most `most`, with a warning when it is cut.
fn capped(policy: &str, field: &str, value: u32, most: u32) -> u32 {
    if value > most {
        tracing::warn!(
            policy = %policy,
            field,
            value,
            "{field} is over the profile's cap: it runs as {most}"
        );
    }
    value.min(most)
}

/// The retry stage of `profile`. A profile with an attempts cap (gRPC's, gRFC A6) hedges
/// or retries, never both: the cap bounds a call's attempts, and hedged rounds retried
/// would make up to the cap's square. A policy with both is refused here, at build, and
/// at reload by the stage's own check, which the reload runs before it changes anything.
pub(crate) fn retry_layer<P: Profile>(
    name: &str,
    config: &RetryConfig,
    health: &HealthSignal,
    profile: &P,
) -> Result<RetryLayer<P>, ConfigError> {
    let exclusive_hedging = profile.max_attempts_cap().is_some();
    // The policy's own counts, as a reload checks them, before any is cut to the cap.
    if exclusive_hedging {
        config.check_exclusive_hedging()?;
    }
    tower_prism_retry::RetryLayer::builder(retry_config(name, config, profile))
        .name(name)
        .health(health.clone())
        // Our own rejections below the retry stage (a balancer with no healthy endpoint,
        // an inner rate limiter) say how long to wait.
        .retry_after_hint(crate::error::retry_after_hint)
        .exclusive_hedging(exclusive_hedging)
        .classify(profile.classify())
        .clone_request(profile.replay())
        .response_hint(profile.hint())
        .build()
}

pub(crate) fn reconfigure_retry<P: Profile>(
    name: &str,
    layer: &RetryLayer<P>,
    config: &RetryConfig,
    profile: &P,
) -> Result<(), ConfigError> {
    layer
        .handle()
        .reconfigure(&retry_config(name, config, profile))
}

// ---------------------------------------------------------------- fault injection

pub(crate) type FaultLayer<P> = tower_prism_fault::FaultLayer<<P as Profile>::FaultStatus>;
/// The fault stage's service.
pub type FaultService<S, P> = tower_prism_fault::Fault<S, <P as Profile>::FaultStatus>;

/// The fault stage of every policy: a policy without a `fault` table runs it switched
/// off (one atomic load per call), so that a reload can add the table for a game day.
pub(crate) fn fault_layer<P: Profile>(
    name: &str,
    config: Option<&FaultConfig>,
    profile: &P,
) -> Result<FaultLayer<P>, ConfigError> {
    // A profile whose `FaultStatus` is `NoStatus` gets a layer that refuses status
    // faults, at build and at reload, with an error naming `status`; one that cannot
    // answer gRPC statuses refuses a `grpc_code`.
    let config = config.cloned().unwrap_or_else(fault_off);
    profile.fault_layer(tower_prism_fault::FaultLayer::builder(config).name(name))
}

/// What a policy without a `fault` table runs.
pub(crate) fn fault_off() -> FaultConfig {
    let mut off = FaultConfig::default();
    off.enabled = false;
    off
}

// ---------------------------------------------------------------- balance

/// A balancer stacked with the policy, as the policy's reload sees it: check a config
/// without applying it, then apply it. Held weakly: a balancer its user dropped goes (its
/// endpoints, health checks and DNS task with it), and checks and applies nothing.
pub(crate) trait ReloadBalancer: Send + Sync {
    /// Whether the balancer would accept `config`; changes nothing.
    fn check(&self, config: &BalanceConfig) -> Result<(), ConfigError>;
    /// Applies `config` (already checked).
    fn apply(&self, config: &BalanceConfig) -> Result<(), ConfigError>;
    /// Whether the balancer is still running.
    fn is_running(&self) -> bool;
    /// The name of the balancer (the `name` label of its metrics), while it runs.
    fn name(&self) -> Option<String>;
}

impl<K, S> ReloadBalancer for tower_prism_balance::WeakBalanceHandle<K, S>
where
    tower_prism_balance::WeakBalanceHandle<K, S>: Send + Sync,
{
    fn check(&self, config: &BalanceConfig) -> Result<(), ConfigError> {
        self.upgrade().map_or(Ok(()), |handle| handle.check(config))
    }

    fn apply(&self, config: &BalanceConfig) -> Result<(), ConfigError> {
        self.upgrade()
            .map_or(Ok(()), |handle| handle.reconfigure(config))
    }

    fn is_running(&self) -> bool {
        self.upgrade().is_some()
    }

    fn name(&self) -> Option<String> {
        self.upgrade().map(|handle| handle.name().to_owned())
    }
}
