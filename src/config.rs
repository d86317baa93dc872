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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tower_prism_core::ConfigError;

use crate::components::{
    BalanceConfig, BreakerConfig, ConcurrencyConfig, RateLimitConfig, RetryConfig,
};
use crate::profile::{Generic, Profile};

/// The whole config file: named policies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReliabilityConfig {
    /// The policies, by name (`[policy.<name>]`).
    #[serde(default)]
    pub policy: BTreeMap<String, PolicyConfig>,
}

/// One named policy: which stages it has and how each is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The rate limiter (`[policy.<name>.rate_limit]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// The adaptive concurrency limit (`[policy.<name>.concurrency_limit]`), right below
    /// the rate limiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<ConcurrencyConfig>,
    /// The circuit breaker (`[policy.<name>.circuit_breaker]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerConfig>,
    /// Retries (`[policy.<name>.retry]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// The load balancer (`[policy.<name>.balance]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<BalanceConfig>,
}

impl PolicyConfig {
    /// Checks every stage's values; the error names the stage and field
    /// (`circuit_breaker.failure_rate_threshold`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(c) = &self.rate_limit {
            c.validate().map_err(|e| e.in_section("rate_limit"))?;
        }
        if let Some(c) = &self.concurrency_limit {
            c.validate()
                .map_err(|e| e.in_section("concurrency_limit"))?;
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
        Ok(())
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML, has an unknown key or a value of the wrong type.
    /// The message gives the line, the key and the value.
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range; the field is `policy.<name>.<stage>.<field>`.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// No policy of that name in the file.
    #[error("no policy named {name:?} in the config (known: {known})")]
    UnknownPolicy {
        /// The name asked for.
        name: String,
        /// The names the file has, comma-separated.
        known: String,
    },
    /// A hot reload tried to change which stages a running policy has; that needs a
    /// restart (the layers' types are fixed when they are built).
    #[error("policy {policy:?}: cannot {change} the `{stage}` stage of a running layer; restart to change the stack's shape")]
    ShapeChanged {
        /// The policy.
        policy: String,
        /// The stage added or removed.
        stage: &'static str,
        /// `add` or `remove`.
        change: &'static str,
    },
}

impl ConfigFileError {
    /// The dotted path of the bad field, when a value was out of range.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigFileError::Invalid(e) => Some(e.field()),
            _ => None,
        }
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
        let config: ReliabilityConfig = toml::from_str(text)?;
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
            policy
                .validate()
                .map_err(|e| e.in_section(&format!("policy.{name}")))?;
        }
        Ok(())
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Result<&PolicyConfig, ConfigFileError> {
        self.policy
            .get(name)
            .ok_or_else(|| ConfigFileError::UnknownPolicy {
                name: name.to_owned(),
                known: self.policy.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }
}

/// Every policy of a config file as a running [`ReliabilityLayer`](crate::ReliabilityLayer), and the hot-reload
/// handle for them: [`reload`](Policies::reload) applies a new file to the running layers.
///
/// ```
/// use tower_prism::{Policies, ReliabilityConfig};
///
/// let config = ReliabilityConfig::from_toml("[policy.api.rate_limit]\nrate = 10").unwrap();
/// let policies = Policies::new(&config).unwrap();
/// let api = policies.get("api").unwrap(); // stack services with it
///
/// // A bad new config is refused and the running one stays.
/// assert!(policies.reload_toml("[policy.api.rate_limit]\nrate = 0").is_err());
/// policies.reload_toml("[policy.api.rate_limit]\nrate = 50").unwrap();
/// assert_eq!(api.snapshot().rate_limit.unwrap().rate_per_second, 50.0);
/// ```
#[derive(Debug, Clone)]
pub struct Policies<P: Profile = Generic> {
    layers: BTreeMap<String, crate::ReliabilityLayer<P>>,
}

impl Policies {
    /// Builds one layer per policy, with the [`Generic`] profile.
    pub fn new(config: &ReliabilityConfig) -> Result<Policies, ConfigFileError> {
        Policies::with_profile(config, Generic)
    }
}

impl<P: Profile> Policies<P> {
    /// Builds one layer per policy, each with `profile` (e.g. [`Http`](crate::Http)).
    pub fn with_profile(
        config: &ReliabilityConfig,
        profile: P,
    ) -> Result<Policies<P>, ConfigFileError> {
        let layers = config
            .policy
            .iter()
            .map(|(name, policy)| {
                Ok((
                    name.clone(),
                    crate::ReliabilityLayer::from_policy_as(name, policy, profile.clone())?,
                ))
            })
            .collect::<Result<_, ConfigFileError>>()?;
        Ok(Policies { layers })
    }

    /// The layer of policy `name` (clones share its state and its reloads).
    pub fn get(&self, name: &str) -> Result<crate::ReliabilityLayer<P>, ConfigFileError> {
        self.layers
            .get(name)
            .cloned()
            .ok_or_else(|| ConfigFileError::UnknownPolicy {
                name: name.to_owned(),
                known: self.layers.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Applies a new config to every running layer, without dropping requests in flight.
    ///
    /// All of it is checked first: every running policy must be in the new file with the
    /// same stages, and every value valid. On any error nothing changes.
    pub fn reload(&self, config: &ReliabilityConfig) -> Result<(), ConfigFileError> {
        config.validate()?;
        for (name, layer) in &self.layers {
            let policy = config.get(name)?;
            layer.check_shape(policy)?;
        }
        for (name, layer) in &self.layers {
            layer.reconfigure(config.get(name)?)?;
        }
        Ok(())
    }

    /// Parses, validates and applies a new TOML text (see [`reload`](Self::reload)).
    pub fn reload_toml(&self, text: &str) -> Result<(), ConfigFileError> {
        self.reload(&ReliabilityConfig::from_toml(text)?)
    }

    /// Reads, validates and applies a new config file (see [`reload`](Self::reload)).
    pub fn reload_file(&self, path: impl AsRef<Path>) -> Result<(), ConfigFileError> {
        self.reload(&ReliabilityConfig::from_file(path)?)
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
    fn reload_is_all_or_nothing() {
        let config = ReliabilityConfig::from_toml(TWO).unwrap();
        let policies = Policies::new(&config).unwrap();
        let rate = |name: &str| {
            let layer = policies.get(name).unwrap();
            layer.snapshot().rate_limit.unwrap().rate_per_second
        };
        // search loses its limiter: refused, and payments (valid) is not applied either.
        let err = policies
            .reload_toml("[policy.payments.rate_limit]\nrate = 20\n[policy.search.balance]")
            .unwrap_err();
        assert!(
            matches!(err, ConfigFileError::ShapeChanged { ref policy, stage: "rate_limit", change: "remove" } if policy == "search"),
            "{err}"
        );
        assert_eq!(rate("payments"), 10.0);
        // A running policy missing from the new file: refused.
        let err = policies
            .reload_toml("[policy.payments.rate_limit]\nrate = 20")
            .unwrap_err();
        assert!(
            matches!(err, ConfigFileError::UnknownPolicy { .. }),
            "{err}"
        );
        assert_eq!(rate("payments"), 10.0);
        // A good one applies to both.
        policies
            .reload_toml(
                &TWO.replace("rate = 10", "rate = 20")
                    .replace("rate = 100", "rate = 200"),
            )
            .unwrap();
        assert_eq!((rate("payments"), rate("search")), (20.0, 200.0));
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
