//! The balancer's config: strategy, latency estimate, outlier ejection and health checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{check_duration, check_nonzero, check_ratio, duration};
use tower_prism_core::ConfigError;

use crate::outlier;

/// How the balancer chooses an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Power of two choices on peak-EWMA latency times outstanding requests (Finagle, linkerd).
    #[default]
    P2cPeakEwma,
    /// The endpoint with the fewest requests in flight.
    LeastRequests,
    /// Each endpoint in turn.
    RoundRobin,
    /// Smooth weighted round robin on the endpoints' weights.
    WeightedRoundRobin,
    /// Rendezvous hashing on the request key from `key_fn`.
    ConsistentHash,
}

impl Strategy {
    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => Strategy::LeastRequests,
            2 => Strategy::RoundRobin,
            3 => Strategy::WeightedRoundRobin,
            4 => Strategy::ConsistentHash,
            _ => Strategy::P2cPeakEwma,
        }
    }
}

/// Passive health: outlier ejection (Envoy's `outlier_detection`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Whether endpoints are ejected at all.
    pub enabled: bool,
    /// Failures in a row that eject an endpoint; 0 disables this rule. Default 5.
    pub consecutive_failures: u32,
    /// Eject an endpoint whose success rate over `interval` falls below this ratio
    /// (in `(0, 1]`); `None` (the default) disables this rule.
    pub success_rate_threshold: Option<f64>,
    /// Calls in the interval before the success-rate rule applies. Default 20.
    pub min_requests: u32,
    /// The success-rate window. Default 10s.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// The first ejection lasts this long; the n-th lasts n times as long. Default 30s.
    #[serde(with = "duration")]
    pub base_ejection_time: Duration,
    /// No ejection lasts longer. Default 300s.
    #[serde(with = "duration")]
    pub max_ejection_time: Duration,
    /// Never eject more than this percentage of the endpoints (rounded down, so with 50%
    /// one endpoint of one is never ejected). Default 50.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            enabled: true,
            consecutive_failures: 5,
            success_rate_threshold: None,
            min_requests: 20,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

impl OutlierConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(r) = self.success_rate_threshold {
            check_ratio("success_rate_threshold", r)?;
        }
        check_duration("interval", self.interval)?;
        check_duration("base_ejection_time", self.base_ejection_time)?;
        check_duration("max_ejection_time", self.max_ejection_time)?;
        if self.max_ejection_time < self.base_ejection_time {
            return Err(ConfigError::new(
                "max_ejection_time",
                humantime::format_duration(self.max_ejection_time),
                "must be at least base_ejection_time",
            ));
        }
        if self.max_ejection_percent > 100 {
            return Err(ConfigError::new(
                "max_ejection_percent",
                self.max_ejection_percent,
                "must be at most 100",
            ));
        }
        Ok(())
    }

    pub(crate) fn settings(&self) -> outlier::Settings {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        outlier::Settings {
            consecutive_failures: if self.enabled {
                self.consecutive_failures
            } else {
                0
            },
            success_rate_permille: match (self.enabled, self.success_rate_threshold) {
                (true, Some(r)) => (r * 1000.0).round() as u32,
                _ => 0,
            },
            min_requests: self.min_requests,
            interval_ms: ms(self.interval),
            base_ejection_ms: ms(self.base_ejection_time),
            max_ejection_ms: ms(self.max_ejection_time),
            max_ejection_percent: self.max_ejection_percent,
        }
    }
}

/// Active health checks. They run only when a probe is given
/// ([`BalanceBuilder::health_check`](crate::BalanceBuilder::health_check)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Time between probe rounds. Default 10s.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A probe that takes longer fails. Default 2s.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Passing probes in a row that make an unhealthy endpoint healthy. Default 2.
    pub healthy_threshold: u32,
    /// Failing probes in a row that make a healthy endpoint unhealthy. Default 3.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

impl HealthCheckConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_duration("interval", self.interval)?;
        check_duration("timeout", self.timeout)?;
        check_nonzero("healthy_threshold", self.healthy_threshold)?;
        check_nonzero("unhealthy_threshold", self.unhealthy_threshold)?;
        Ok(())
    }
}

/// The balancer's config. Every field has a default, so `BalanceConfig::default()` and an
/// empty TOML table both give a P2C peak-EWMA balancer with outlier ejection on.
///
/// ```
/// use tower_prism_balance::{BalanceConfig, Strategy};
///
/// let config: BalanceConfig = toml::from_str(r#"
///     strategy = "least_requests"
///     [outlier]
///     consecutive_failures = 3
///     base_ejection_time = "10s"
/// "#).unwrap();
/// assert_eq!(config.strategy, Strategy::LeastRequests);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceConfig {
    /// How endpoints are chosen. Default `p2c_peak_ewma`.
    pub strategy: Strategy,
    /// The latency assumed for an endpoint before it has answered. Default 30ms.
    #[serde(with = "duration")]
    pub default_rtt: Duration,
    /// The peak-EWMA time constant. Default 10s.
    #[serde(with = "duration")]
    pub ewma_decay: Duration,
    /// Outlier ejection.
    pub outlier: OutlierConfig,
    /// Active health checks (used only with a probe).
    pub health_check: HealthCheckConfig,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            strategy: Strategy::default(),
            default_rtt: Duration::from_millis(30),
            ewma_decay: Duration::from_secs(10),
            outlier: OutlierConfig::default(),
            health_check: HealthCheckConfig::default(),
        }
    }
}

impl BalanceConfig {
    /// Checks every field; errors name the field (`outlier.interval`...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_duration("default_rtt", self.default_rtt)?;
        check_duration("ewma_decay", self.ewma_decay)?;
        self.outlier
            .validate()
            .map_err(|e| e.in_section("outlier"))?;
        self.health_check
            .validate()
            .map_err(|e| e.in_section("health_check"))?;
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_round_trip() {
        let c: BalanceConfig = toml::from_str("").unwrap();
        assert_eq!(c, BalanceConfig::default());
        c.validate().unwrap();
        let text = toml::to_string(&BalanceConfig {
            strategy: Strategy::ConsistentHash,
            ..c
        })
        .unwrap();
        assert!(text.contains("strategy = \"consistent_hash\""), "{text}");
        let back: BalanceConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.strategy, Strategy::ConsistentHash);
        for s in [
            Strategy::P2cPeakEwma,
            Strategy::LeastRequests,
            Strategy::RoundRobin,
            Strategy::WeightedRoundRobin,
            Strategy::ConsistentHash,
        ] {
            assert_eq!(Strategy::from_u8(s.to_u8()), s);
        }
    }

    #[test]
    fn bad_values_name_the_field() {
        assert!(toml::from_str::<BalanceConfig>("stratgey = \"round_robin\"").is_err());
        assert!(toml::from_str::<BalanceConfig>("strategy = \"random\"").is_err());
        let c: BalanceConfig = toml::from_str("[outlier]\nmax_ejection_percent = 150").unwrap();
        assert_eq!(
            c.validate().unwrap_err().field(),
            "outlier.max_ejection_percent"
        );
        let c: BalanceConfig = toml::from_str("[outlier]\nsuccess_rate_threshold = 0.0").unwrap();
        assert_eq!(
            c.validate().unwrap_err().field(),
            "outlier.success_rate_threshold"
        );
        let c: BalanceConfig = toml::from_str("[health_check]\ninterval = \"0s\"").unwrap();
        assert_eq!(c.validate().unwrap_err().field(), "health_check.interval");
        let c: BalanceConfig =
            toml::from_str("[outlier]\nbase_ejection_time = \"1m\"\nmax_ejection_time = \"10s\"")
                .unwrap();
        assert_eq!(
            c.validate().unwrap_err().field(),
            "outlier.max_ejection_time"
        );
    }
}
