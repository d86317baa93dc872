//! A TOML file of named policies, each stacking the components' own configs.
//!
//! ```toml
//! [policy.payments.rate_limit]
//! rate = 100
//! period = "1s"
//!
//! [policy.payments.circuit_breaker]
//! failure_rate_threshold = 0.5
//! wait_duration = "10s"
//!
//! [policy.payments.retry]
//! max_attempts = 3
//!
//! [policy.payments.balance]
//! strategy = "p2c_peak_ewma"
//! ```
//!
//! Every table is optional; a policy without a table has no such stage.
//!
//! Hot reload ([`Policies::reload`](crate::Policies::reload)) keeps the shape of what runs:
//! the same policies, each with the same stage tables (except `fault`, which a reload may
//! add or remove). Within that, every value can change, except a running limiter's or
//! breaker's `clock`, a running limiter's `key` and whether it has an `adaptive` table (the
//! table's values can change), a running breaker's `window`, a running retry stage's
//! `budget.window` and a running deadline's `header` and `header_format`. A reload that
//! breaks a rule, or has any invalid value, is refused with an error naming it and
//! changes nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tower_prism_core::ConfigError;

use crate::components::{
    BalanceConfig, BreakerConfig, ConcurrencyConfig, DeadlineConfig, FaultConfig, RateLimitConfig,
    RetryConfig,
};
use crate::config_error::ConfigFileError;
use crate::fallback::FallbackConfig;
use crate::names::{bounded_name, check_policy_name, known_names, policy_section};
use crate::parse_error::ParseError;

/// The whole config file: named policies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ReliabilityConfig {
    /// The policies, by name (`[policy.<name>]`).
    #[serde(default)]
    pub policy: BTreeMap<String, PolicyConfig>,
}

/// One named policy: which stages it has and how each is set.
///
/// From a file (a `[policy.<name>]` table of [`ReliabilityConfig`]), or in code with
/// [`PolicyConfig::builder`]:
///
/// ```
/// use tower_prism::PolicyConfig;
///
/// let policy = PolicyConfig::builder()
///     .circuit_breaker(Default::default())
///     .retry(Default::default())
///     .build()
///     .unwrap();
/// assert!(policy.rate_limit.is_none() && policy.retry.is_some());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawPolicyConfig")]
#[non_exhaustive]
pub struct PolicyConfig {
    /// The fallback answer (`[policy.<name>.fallback]`), applied by the layer
    /// [`ReliabilityLayer::fallback`](crate::ReliabilityLayer::fallback) gives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackConfig>,
    /// The rate limiter (`[policy.<name>.rate_limit]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// The adaptive concurrency limit (`[policy.<name>.concurrency_limit]`), right below
    /// the rate limiter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<ConcurrencyConfig>,
    /// The deadline (`[policy.<name>.deadline]`): a total timeout over the breaker, every
    /// retry attempt and backoff and the balancer, and the request's own deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DeadlineConfig>,
    /// The circuit breaker (`[policy.<name>.circuit_breaker]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerConfig>,
    /// Retries (`[policy.<name>.retry]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// The load balancer (`[policy.<name>.balance]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<BalanceConfig>,
    /// Fault injection (`[policy.<name>.fault]`), innermost: around each endpoint of a
    /// balancer made by the policy, else around the inner service. Unlike the other
    /// tables, a reload may add or remove it (a game day switched on and off); without
    /// it, the stage injects nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultConfig>,
}

/// A policy as written, before its breaker table is checked (parsing does not validate a
/// stage's values; the breaker's are checked here so a file's errors name the field).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyConfig {
    #[serde(default)]
    fallback: Option<FallbackConfig>,
    #[serde(default)]
    rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    concurrency_limit: Option<ConcurrencyConfig>,
    #[serde(default)]
    deadline: Option<DeadlineConfig>,
    #[serde(default)]
    circuit_breaker: Option<BreakerConfig>,
    #[serde(default)]
    retry: Option<RetryConfig>,
    #[serde(default)]
    balance: Option<BalanceConfig>,
    #[serde(default)]
    fault: Option<FaultConfig>,
}

/// The file as written (see [`RawPolicyConfig`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    policy: BTreeMap<String, RawPolicyConfig>,
}

impl TryFrom<RawPolicyConfig> for PolicyConfig {
    type Error = ConfigError;

    fn try_from(raw: RawPolicyConfig) -> Result<Self, ConfigError> {
        let circuit_breaker = raw
            .circuit_breaker
            .map(|c| c.validate().map(|()| c))
            .transpose()
            .map_err(|e| e.in_section("circuit_breaker"))?;
        Ok(PolicyConfig {
            fallback: raw.fallback,
            rate_limit: raw.rate_limit,
            concurrency_limit: raw.concurrency_limit,
            deadline: raw.deadline,
            circuit_breaker,
            retry: raw.retry,
            balance: raw.balance,
            fault: raw.fault,
        })
    }
}

impl PolicyConfig {
    /// A builder with no stage.
    pub fn builder() -> PolicyConfigBuilder {
        PolicyConfigBuilder::default()
    }

    /// Checks every stage's values; the error names the stage and field
    /// (`circuit_breaker.failure_rate_threshold`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(c) = &self.fallback {
            c.validate().map_err(|e| e.in_section("fallback"))?;
        }
        if let Some(c) = &self.rate_limit {
            c.validate().map_err(|e| e.in_section("rate_limit"))?;
        }
        if let Some(c) = &self.concurrency_limit {
            c.validate()
                .map_err(|e| e.in_section("concurrency_limit"))?;
        }
        if let Some(c) = &self.deadline {
            c.validate().map_err(|e| e.in_section("deadline"))?;
        }
        if let Some(c) = &self.circuit_breaker {
            crate::components::validate_breaker(c).map_err(|e| e.in_section("circuit_breaker"))?;
        }
        if let Some(c) = &self.retry {
            crate::components::validate_retry(c).map_err(|e| e.in_section("retry"))?;
        }
        if let Some(c) = &self.balance {
            c.validate().map_err(|e| e.in_section("balance"))?;
        }
        if let Some(c) = &self.fault {
            c.validate().map_err(|e| e.in_section("fault"))?;
        }
        Ok(())
    }
}

/// Builds a [`PolicyConfig`]: one setter per stage; [`build`](Self::build) validates.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfigBuilder {
    policy: PolicyConfig,
}

impl PolicyConfigBuilder {
    /// Adds the fallback answer.
    pub fn fallback(mut self, config: FallbackConfig) -> Self {
        self.policy.fallback = Some(config);
        self
    }

    /// Adds the rate limiter.
    pub fn rate_limit(mut self, config: RateLimitConfig) -> Self {
        self.policy.rate_limit = Some(config);
        self
    }

    /// Adds the adaptive concurrency limit.
    pub fn concurrency_limit(mut self, config: ConcurrencyConfig) -> Self {
        self.policy.concurrency_limit = Some(config);
        self
    }

    /// Adds the deadline.
    pub fn deadline(mut self, config: DeadlineConfig) -> Self {
        self.policy.deadline = Some(config);
        self
    }

    /// Adds the circuit breaker.
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.policy.circuit_breaker = Some(config);
        self
    }

    /// Adds retries.
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.policy.retry = Some(config);
        self
    }

    /// Sets the load balancer's config.
    pub fn balance(mut self, config: BalanceConfig) -> Self {
        self.policy.balance = Some(config);
        self
    }

    /// Adds fault injection.
    pub fn fault(mut self, config: FaultConfig) -> Self {
        self.policy.fault = Some(config);
        self
    }

    /// Checks every stage (see [`PolicyConfig::validate`]) and returns the policy.
    pub fn build(self) -> Result<PolicyConfig, ConfigError> {
        self.policy.validate()?;
        Ok(self.policy)
    }
}

impl ReliabilityConfig {
    /// Parses and validates a TOML text.
    ///
    /// ```
    /// use tower_prism::ReliabilityConfig;
    ///
    /// let config = ReliabilityConfig::from_toml(r#"
    ///     [policy.payments.rate_limit]
    ///     rate = 100
    /// "#).unwrap();
    /// assert!(config.policy["payments"].rate_limit.is_some());
    ///
    /// let err = ReliabilityConfig::from_toml(r#"
    ///     [policy.payments.rate_limit]
    ///     rate = 0
    /// "#).unwrap_err();
    /// assert_eq!(err.field(), Some("policy.payments.rate_limit.rate"));
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, ConfigFileError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigFileError::Parse(ParseError::new(text, &e)))?;
        let policy = raw
            .policy
            .into_iter()
            .map(|(name, raw)| {
                check_policy_name(&name)?;
                let policy = PolicyConfig::try_from(raw)
                    .map_err(|e| e.in_section(&policy_section(&name)))?;
                Ok((name, policy))
            })
            .collect::<Result<_, ConfigError>>()?;
        let config = ReliabilityConfig { policy };
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Checks every policy; the error's field is `policy.<name>.<stage>.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, policy) in &self.policy {
            check_policy_name(name)?;
            policy
                .validate()
                .map_err(|e| e.in_section(&policy_section(name)))?;
        }
        Ok(())
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Result<&PolicyConfig, ConfigFileError> {
        self.policy
            .get(name)
            .ok_or_else(|| ConfigFileError::UnknownPolicy {
                name: bounded_name(name),
                known: known_names(self.policy.keys()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
        [policy.payments.rate_limit]
        rate = 10

        [policy.search.rate_limit]
        rate = 100
        [policy.search.balance]
        strategy = "round_robin"
    "#;

    #[test]
    fn unknown_keys_and_bad_values_name_where() {
        let err = ReliabilityConfig::from_toml("[policy.p.rate_limt]\nrate = 1").unwrap_err();
        assert!(matches!(err, ConfigFileError::Parse(_)));
        assert!(err.to_string().contains("rate_limt"), "{err}");
        let err =
            ReliabilityConfig::from_toml("[policy.p.balance]\nstrategy = \"random\"").unwrap_err();
        assert!(err.to_string().contains("random"), "{err}");
        let err =
            ReliabilityConfig::from_toml("[policy.p.balance.outlier]\nmax_ejection_percent = 150")
                .unwrap_err();
        assert_eq!(
            err.field(),
            Some("policy.p.balance.outlier.max_ejection_percent")
        );
        assert!(err.to_string().contains("150"), "{err}");
    }

    #[test]
    fn unknown_policy_lists_the_known_ones() {
        let config = ReliabilityConfig::from_toml(TWO).unwrap();
        let err = crate::ReliabilityLayer::from_config(&config, "billing").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no policy named \"billing\" in the config (known: payments, search)"
        );
    }

    #[test]
    fn files_are_read_and_missing_files_named() {
        let path = std::env::temp_dir().join(format!("prism-config-{}.toml", std::process::id()));
        std::fs::write(&path, TWO).unwrap();
        let config = ReliabilityConfig::from_file(&path).unwrap();
        assert_eq!(config.policy.len(), 2);
        std::fs::remove_file(&path).unwrap();
        let err = ReliabilityConfig::from_file(&path).unwrap_err();
        assert!(err.to_string().contains("prism-config-"), "{err}");
    }
}
