//! [`ReliabilityLayerBuilder`]: pick the stages, in any order.

use std::sync::Arc;

use tower_prism_core::{ConfigError, HealthSignal};

use crate::components::{self as c, BalanceConfig, BreakerConfig, RateLimitConfig, RetryConfig};
use crate::config::PolicyConfig;
use crate::layer::{ReliabilityLayer, Shared};

/// Builds a [`ReliabilityLayer`]. Each stage is optional; the stack's order is fixed
/// (rate limit -> circuit breaker -> retry -> balance) whatever order these methods are
/// called in.
#[derive(Debug, Clone)]
pub struct ReliabilityLayerBuilder {
    name: String,
    health: Option<HealthSignal>,
    pub(crate) policy: PolicyConfig,
}

impl Default for ReliabilityLayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReliabilityLayerBuilder {
    /// No stage, name `"default"`.
    pub fn new() -> Self {
        ReliabilityLayerBuilder {
            name: "default".to_owned(),
            health: None,
            policy: PolicyConfig::default(),
        }
    }

    /// The policy name: the `name` label of every metric and the name in log events.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds the rate limiter (outermost: excess load is shed first).
    pub fn rate_limit(mut self, config: RateLimitConfig) -> Self {
        self.policy.rate_limit = Some(config);
        self
    }

    /// Adds the circuit breaker (it sees one logical call, after retries).
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.policy.circuit_breaker = Some(config);
        self
    }

    /// Adds retries (above the balancer, so a retry can go to another endpoint).
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.policy.retry = Some(config);
        self
    }

    /// Sets the load balancer's config, used by the balancers made with
    /// [`ReliabilityLayer::balancer`] and [`ReliabilityLayer::layer_endpoints`] (the default
    /// config when not set).
    pub fn balance(mut self, config: BalanceConfig) -> Self {
        self.policy.balance = Some(config);
        self
    }

    /// Shares an existing health signal (e.g. with another policy guarding the same
    /// upstream) instead of a new one.
    pub fn health_signal(mut self, health: HealthSignal) -> Self {
        self.health = Some(health);
        self
    }

    /// Validates every stage's config and builds the layer. The error names the stage and
    /// field (`circuit_breaker.failure_rate_threshold`).
    pub fn build(self) -> Result<ReliabilityLayer, ConfigError> {
        self.policy.validate()?;
        let name = self.name;
        let health = self.health.unwrap_or_default();
        let p = &self.policy;
        let rate_limit = p
            .rate_limit
            .as_ref()
            .map(|cfg| c::rate_limit_layer(&name, cfg, &health))
            .transpose()
            .map_err(|e| e.in_section("rate_limit"))?;
        let breaker = p
            .circuit_breaker
            .as_ref()
            .map(|cfg| c::breaker_layer(&name, cfg, &health))
            .transpose()
            .map_err(|e| e.in_section("circuit_breaker"))?;
        let retry = p
            .retry
            .as_ref()
            .map(|cfg| c::retry_layer(&name, cfg, &health))
            .transpose()
            .map_err(|e| e.in_section("retry"))?;
        let balance = p.balance.clone();
        Ok(ReliabilityLayer {
            shared: Arc::new(Shared {
                name,
                health,
                rate_limit,
                breaker,
                retry,
                balance,
                balancers: Default::default(),
            }),
        })
    }
}
