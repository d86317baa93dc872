//! The balancer's config: strategy, latency estimate, outlier ejection and health checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{
    check_duration, check_duration_at_most, check_nonzero, check_positive, check_ratio,
    check_size_at_most, duration, MAX_SIZE,
};
use tower_prism_core::ConfigError;

use crate::outlier;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(60 * 60);

/// The longest `default_rtt`: one minute.
pub const MAX_DEFAULT_RTT: Duration = MINUTE;
/// The longest `ewma_decay`, `outlier.interval`, `outlier.base_ejection_time` and
/// `health_check.interval`: one hour.
pub const MAX_INTERVAL: Duration = HOUR;
/// The longest `outlier.max_ejection_time`: one day.
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest `health_check.timeout`: five minutes.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The largest `health_check.healthy_threshold` and `unhealthy_threshold`.
pub const MAX_PROBE_THRESHOLD: u32 = 1_000;
/// The largest `outlier.consecutive_failures`, `outlier.min_requests` and endpoint weight
/// (core's `MAX_SIZE`, 2^24).
pub const MAX_COUNT: u32 = MAX_SIZE as u32;

/// Checks an endpoint weight: at least 1, at most [`MAX_COUNT`].
pub(crate) fn check_weight(weight: u32) -> Result<u32, ConfigError> {
    check_nonzero("weight", weight)?;
    check_size_at_most("weight", weight, MAX_COUNT.into())
}

/// How the balancer chooses an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Power of two choices on peak-EWMA latency times outstanding requests (Finagle, linkerd).
    #[default]
    P2cPeakEwma,
    /// The endpoint with the fewest requests in flight; over endpoints whose weights
    /// differ, Envoy's weighted least request (see
    /// [`BalanceConfig::active_request_bias`]).
    LeastRequests,
    /// Each endpoint in turn.
    RoundRobin,
    /// Smooth weighted round robin on the endpoints' weights.
    WeightedRoundRobin,
    /// Rendezvous hashing on the request key from `key_fn`; each endpoint owns a share of
    /// the keys in proportion to its weight.
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

/// An `Option<f64>` whose `None` is written, and read, as 0: a TOML file has no `None`,
/// and leaving the key out means the default.
mod zero_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(value.unwrap_or(0.0))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.filter(|v| *v != 0.0))
    }
}

/// Passive health: outlier ejection (Envoy's `outlier_detection`). Build one with
/// [`OutlierConfig::builder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct OutlierConfig {
    /// Whether endpoints are ejected at all.
    pub enabled: bool,
    /// Failures in a row that eject an endpoint; 0 disables this rule. Default 5, at most
    /// [`MAX_COUNT`].
    pub consecutive_failures: u32,
    /// Eject an endpoint whose success rate over `interval` falls below this ratio
    /// (in `(0, 1]`); `None` (the default) disables this rule. A fixed threshold, as
    /// Envoy's `failure_percentage` rule (`failure_percentage_threshold` = 1 - this); its
    /// statistical `success_rate` rule is `success_rate_stdev_factor`. Judged as each call
    /// ends once `min_requests` calls are in,
    /// not at a sweep every interval, and tempered by the other endpoints (an endpoint
    /// failing no more often than the rest is not ejected).
    pub success_rate_threshold: Option<f64>,
    /// Calls in the interval before the success-rate rule applies. Default 20, at most
    /// [`MAX_COUNT`].
    pub min_requests: u32,
    /// Envoy's statistical `success_rate` rule: once per `interval`, as Envoy's sweep, every
    /// endpoint's interval ends (when the first of them does) and the endpoints whose
    /// success rate over it is below the mean of theirs less this many standard deviations
    /// are ejected, all judged on the one mean and deviation (Envoy's
    /// `success_rate_stdev_factor` divided by 1000; resolved to a thousandth, a smaller
    /// factor counting as 0.001). Only endpoints in rotation with at least
    /// `success_rate_request_volume` calls in the interval count, and the rule applies
    /// only when at least `success_rate_minimum_hosts` of them do.
    /// Default 1.9, as Envoy's (whose `enforcing_success_rate`, 100 by default, ejects
    /// every outlier found, as here; at 0 it only counts them); in `(0, 100]`. `None` disables the rule; in TOML, `success_rate_stdev_factor = 0`.
    #[serde(with = "zero_is_none")]
    pub success_rate_stdev_factor: Option<f64>,
    /// Endpoints with enough calls the statistical rule needs. Default 5 (Envoy's), at
    /// least 1, at most [`MAX_COUNT`].
    pub success_rate_minimum_hosts: u32,
    /// Calls in an endpoint's interval for the statistical rule to count it. Default 100
    /// (Envoy's), at least 1, at most [`MAX_COUNT`].
    pub success_rate_request_volume: u32,
    /// The success-rate window. Default 10s, at most [`MAX_INTERVAL`] (1h).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// The first ejection lasts this long; the n-th in a row lasts n times as long (capped
    /// by `max_ejection_time`). As Envoy's multiplier, n goes down by one for every
    /// `interval` the endpoint spends in rotation, so one that recovered for good is
    /// ejected for this long again. Default 30s, at most [`MAX_INTERVAL`] (1h).
    #[serde(with = "duration")]
    pub base_ejection_time: Duration,
    /// No ejection lasts longer. Default 300s, at most [`MAX_EJECTION_TIME`] (1 day).
    #[serde(with = "duration")]
    pub max_ejection_time: Duration,
    /// Never eject more than this percentage of the endpoints (rounded down, so with 50%
    /// one endpoint of one is never ejected). Default 50.
    pub max_ejection_percent: u32,
    /// Eject one endpoint even when `max_ejection_percent` allows none (Envoy's
    /// `always_eject_one_host`): with 10% of five endpoints, or 50% of one, the first
    /// outlier is ejected anyway; a second waits for the percentage to allow it. Default
    /// `false`.
    pub always_eject_one_host: bool,
    /// A passing active health check ends an outlier ejection at once and clears the
    /// endpoint's failure counts (Envoy's `successful_active_health_check_uneject_host`):
    /// the probe says it is back, so it need not sit out the rest of its ejection time.
    /// Only with health checks configured. Default `true`, as Envoy's.
    pub successful_active_health_check_uneject_host: bool,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            enabled: true,
            consecutive_failures: 5,
            success_rate_threshold: None,
            min_requests: 20,
            success_rate_stdev_factor: Some(1.9),
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
            always_eject_one_host: false,
            successful_active_health_check_uneject_host: true,
        }
    }
}

impl OutlierConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(r) = self.success_rate_threshold {
            check_ratio("success_rate_threshold", r)?;
        }
        check_size_at_most(
            "consecutive_failures",
            self.consecutive_failures,
            MAX_COUNT.into(),
        )?;
        check_size_at_most("min_requests", self.min_requests, MAX_COUNT.into())?;
        if let Some(factor) = self.success_rate_stdev_factor {
            check_positive("success_rate_stdev_factor", factor)?;
            if factor > 100.0 {
                return Err(ConfigError::new(
                    "success_rate_stdev_factor",
                    factor,
                    "must be at most 100 (Envoy's 1900 is 1.9 here)",
                ));
            }
        }
        for (field, value) in [
            (
                "success_rate_minimum_hosts",
                self.success_rate_minimum_hosts,
            ),
            (
                "success_rate_request_volume",
                self.success_rate_request_volume,
            ),
        ] {
            check_nonzero(field, value)?;
            check_size_at_most(field, value, MAX_COUNT.into())?;
        }
        check_duration("interval", self.interval)?;
        check_duration_at_most("interval", self.interval, MAX_INTERVAL)?;
        check_duration("base_ejection_time", self.base_ejection_time)?;
        check_duration_at_most("base_ejection_time", self.base_ejection_time, MAX_INTERVAL)?;
        check_duration("max_ejection_time", self.max_ejection_time)?;
        check_duration_at_most(
            "max_ejection_time",
            self.max_ejection_time,
            MAX_EJECTION_TIME,
        )?;
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
            // At least 1: a threshold that rounded to 0 would turn the rule off.
            success_rate_ppm: match (self.enabled, self.success_rate_threshold) {
                (true, Some(r)) => ((r * 1e6).round() as u32).max(1),
                _ => 0,
            },
            min_requests: self.min_requests,
            interval_ms: ms(self.interval),
            base_ejection_ms: ms(self.base_ejection_time),
            max_ejection_ms: ms(self.max_ejection_time),
            max_ejection_percent: self.max_ejection_percent,
            always_eject_one_host: self.always_eject_one_host,
        }
    }
}

/// Active health checks. They run only when a probe is given
/// ([`BalanceBuilder::health_check`](crate::BalanceBuilder::health_check)). Build one with
/// [`HealthCheckConfig::builder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HealthCheckConfig {
    /// Time between probe rounds. Default 10s, at most [`MAX_INTERVAL`] (1h).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A probe that takes longer fails. Default 2s, at most [`MAX_PROBE_TIMEOUT`] (5m).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Passing probes in a row that make an unhealthy endpoint healthy. Default 2, at most
    /// [`MAX_PROBE_THRESHOLD`].
    pub healthy_threshold: u32,
    /// Failing probes in a row that make a healthy endpoint unhealthy. Default 3, at most
    /// [`MAX_PROBE_THRESHOLD`].
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
        check_duration_at_most("interval", self.interval, MAX_INTERVAL)?;
        check_duration("timeout", self.timeout)?;
        check_duration_at_most("timeout", self.timeout, MAX_PROBE_TIMEOUT)?;
        check_nonzero("healthy_threshold", self.healthy_threshold)?;
        check_size_at_most(
            "healthy_threshold",
            self.healthy_threshold,
            MAX_PROBE_THRESHOLD.into(),
        )?;
        check_nonzero("unhealthy_threshold", self.unhealthy_threshold)?;
        check_size_at_most(
            "unhealthy_threshold",
            self.unhealthy_threshold,
            MAX_PROBE_THRESHOLD.into(),
        )?;
        Ok(())
    }
}

/// The balancer's config. Every field has a default, so `BalanceConfig::default()` and an
/// empty TOML table both give a P2C peak-EWMA balancer with outlier ejection on. Read it
/// from a file, or build it in code with [`BalanceConfig::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_prism_balance::{BalanceConfig, OutlierConfig, Strategy};
///
/// let config: BalanceConfig = toml::from_str(r#"
///     strategy = "least_requests"
///     [outlier]
///     consecutive_failures = 3
///     base_ejection_time = "10s"
/// "#).unwrap();
/// assert_eq!(config.strategy, Strategy::LeastRequests);
/// config.validate().unwrap();
///
/// // the same in code; `build` validates
/// let built = BalanceConfig::builder()
///     .strategy(Strategy::LeastRequests)
///     .outlier(
///         OutlierConfig::builder()
///             .consecutive_failures(3)
///             .base_ejection_time(Duration::from_secs(10))
///             .build()?,
///     )
///     .build()?;
/// assert_eq!(built, config);
/// # Ok::<(), tower_prism_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BalanceConfig {
    /// How endpoints are chosen. Default `p2c_peak_ewma`.
    pub strategy: Strategy,
    /// Envoy's `active_request_bias`, for `least_requests` over endpoints whose weights
    /// differ: they share the picks in proportion to `weight / (in_flight + 1)^bias`, so
    /// the larger the bias, the more the requests an endpoint has in flight take from its
    /// share; 0 follows the weights alone. Endpoints of equal weights take the fewest in
    /// flight, whatever the bias. Default 1, as Envoy's; at least 0, at most 10.
    pub active_request_bias: f64,
    /// The latency assumed for an endpoint before it has answered. Default 30ms, at most
    /// [`MAX_DEFAULT_RTT`] (1m).
    #[serde(with = "duration")]
    pub default_rtt: Duration,
    /// The peak-EWMA time constant. Default 10s, at most [`MAX_INTERVAL`] (1h).
    #[serde(with = "duration")]
    pub ewma_decay: Duration,
    /// Outlier ejection.
    pub outlier: OutlierConfig,
    /// Active health checks (used only with a probe).
    pub health_check: HealthCheckConfig,
    /// Envoy's panic threshold, in percent of the endpoints: while fewer are in rotation
    /// (the others failing health checks or ejected; those awaiting their first probe
    /// count neither way and never get a call, as with Envoy's
    /// `ignore_new_hosts_until_first_hc`), picks ignore health and spread over every
    /// endpoint, so that a probe gone wrong, or most of an upstream failing at once,
    /// leaves the survivors neither all the load nor every call failing at once. Default
    /// 50, as Envoy's `healthy_panic_threshold`; 0 turns it off (with no endpoint in
    /// rotation, calls then fail with [`Error::NoHealthyEndpoint`](crate::Error)); at most
    /// 100.
    pub healthy_panic_threshold: u32,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            strategy: Strategy::default(),
            active_request_bias: 1.0,
            default_rtt: Duration::from_millis(30),
            ewma_decay: Duration::from_secs(10),
            outlier: OutlierConfig::default(),
            health_check: HealthCheckConfig::default(),
            healthy_panic_threshold: 50,
        }
    }
}

impl BalanceConfig {
    /// Checks every field; errors name the field (`outlier.interval`...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bias = self.active_request_bias;
        if bias.is_nan() || bias < 0.0 {
            return Err(ConfigError::new(
                "active_request_bias",
                bias,
                "must be at least 0",
            ));
        }
        if bias > 10.0 {
            return Err(ConfigError::new(
                "active_request_bias",
                bias,
                "must be at most 10",
            ));
        }
        check_duration("default_rtt", self.default_rtt)?;
        check_duration_at_most("default_rtt", self.default_rtt, MAX_DEFAULT_RTT)?;
        check_duration("ewma_decay", self.ewma_decay)?;
        check_duration_at_most("ewma_decay", self.ewma_decay, MAX_INTERVAL)?;
        self.outlier
            .validate()
            .map_err(|e| e.in_section("outlier"))?;
        self.health_check
            .validate()
            .map_err(|e| e.in_section("health_check"))?;
        check_size_at_most("healthy_panic_threshold", self.healthy_panic_threshold, 100)?;
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

    /// Every size and duration has an upper bound, with a typed error naming the field
    /// beyond it; the bound itself is accepted.
    #[test]
    fn every_size_and_duration_has_an_upper_bound() {
        let over = |text: &str| {
            let c: BalanceConfig = toml::from_str(text).unwrap();
            c.validate().unwrap_err()
        };
        for (text, field) in [
            ("default_rtt = \"61s\"", "default_rtt"),
            ("active_request_bias = 10.5", "active_request_bias"),
            ("ewma_decay = \"2h\"", "ewma_decay"),
            ("[outlier]\ninterval = \"100y\"", "outlier.interval"),
            (
                "[outlier]\nbase_ejection_time = \"2h\"\nmax_ejection_time = \"3h\"",
                "outlier.base_ejection_time",
            ),
            (
                "[outlier]\nmax_ejection_time = \"500000y\"",
                "outlier.max_ejection_time",
            ),
            (
                "[outlier]\nconsecutive_failures = 4294967295",
                "outlier.consecutive_failures",
            ),
            ("[outlier]\nmin_requests = 16777217", "outlier.min_requests"),
            (
                "[health_check]\ninterval = \"1day\"",
                "health_check.interval",
            ),
            ("[health_check]\ntimeout = \"6m\"", "health_check.timeout"),
            (
                "[health_check]\nhealthy_threshold = 1001",
                "health_check.healthy_threshold",
            ),
            (
                "[health_check]\nunhealthy_threshold = 4294967295",
                "health_check.unhealthy_threshold",
            ),
        ] {
            let err = over(text);
            assert_eq!(err.field(), field, "{text}: {err}");
            assert!(err.reason().starts_with("must be at most"), "{err}");
        }
        let at_the_bounds: BalanceConfig = toml::from_str(
            "default_rtt = \"1m\"\newma_decay = \"1h\"\nactive_request_bias = 10.0\n\
             [outlier]\ninterval = \"1h\"\nbase_ejection_time = \"1h\"\n\
             max_ejection_time = \"1day\"\nconsecutive_failures = 16777216\n\
             min_requests = 16777216\n\
             [health_check]\ninterval = \"1h\"\ntimeout = \"5m\"\n\
             healthy_threshold = 1000\nunhealthy_threshold = 1000",
        )
        .unwrap();
        at_the_bounds.validate().unwrap();
        assert_eq!(check_weight(MAX_COUNT), Ok(MAX_COUNT));
        assert_eq!(check_weight(MAX_COUNT + 1).unwrap_err().field(), "weight");
        assert_eq!(check_weight(0).unwrap_err().field(), "weight");
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
        for bias in ["-0.5", "nan"] {
            let c: BalanceConfig =
                toml::from_str(&format!("active_request_bias = {bias}")).unwrap();
            assert_eq!(c.validate().unwrap_err().field(), "active_request_bias");
        }
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
