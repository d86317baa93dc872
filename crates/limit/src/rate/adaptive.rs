//! [`AdaptiveConfig`]: the bounds and reactions of a rate that follows downstream health
//! (the rule itself is in `adapt.rs`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{
    check_duration, check_duration_at_most, check_positive, check_ratio, check_size_at_most,
    ConfigError, MAX_SIZE,
};

/// How the adaptive rate reacts to downstream health. Rates are in requests per second.
///
/// Each `interval` with at least `min_calls` judged calls, the rate is cut by
/// `decrease_factor` when their failure rate or mean latency crossed its threshold, and
/// grows by `increase_step` otherwise. While a breaker on the same health signal reports the
/// circuit open, the rate holds: the breaker already fails calls fast, and a cut would keep
/// the service slow once the upstream is back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AdaptiveConfig {
    /// The rate never drops below this (requests per second).
    pub min_rate: f64,
    /// The rate never rises above this (requests per second).
    pub max_rate: f64,
    /// How often health is read and the rate adjusted; at most
    /// [`MAX_INTERVAL`](Self::MAX_INTERVAL) (one hour).
    #[serde(
        default = "default_interval",
        with = "tower_prism_core::config::duration"
    )]
    pub interval: Duration,
    /// Failure rate (failures over judged calls) at or above which the rate is cut.
    #[serde(default = "default_failure_rate")]
    pub failure_rate_threshold: f64,
    /// Mean latency at or above which the rate is cut; none to ignore latency. At most
    /// [`MAX_LATENCY_THRESHOLD`](Self::MAX_LATENCY_THRESHOLD) (one hour).
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub latency_threshold: Option<Duration>,
    /// Multiplier applied on a cut, in (0, 1).
    #[serde(default = "default_decrease")]
    pub decrease_factor: f64,
    /// Requests per second added per healthy interval; at most 10^7 (the highest rate).
    #[serde(default = "default_increase")]
    pub increase_step: f64,
    /// Calls an interval needs before it counts as evidence either way; at most 2^24.
    #[serde(default = "default_min_calls")]
    pub min_calls: u64,
}

/// The highest adaptive rate, per second: at most 1% rounding error in a whole-nanosecond
/// token spacing.
const MAX_ADAPTIVE_RATE: f64 = 1e7;

fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_failure_rate() -> f64 {
    0.1
}
fn default_decrease() -> f64 {
    0.7
}
fn default_increase() -> f64 {
    1.0
}
fn default_min_calls() -> u64 {
    10
}

impl AdaptiveConfig {
    /// The longest `interval` accepted (one hour): a rate that follows health more slowly
    /// than that does not follow it.
    pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
    /// The longest `latency_threshold` accepted (one hour).
    pub const MAX_LATENCY_THRESHOLD: Duration = Duration::from_secs(3600);

    /// Defaults for everything but the bounds.
    pub fn new(min_rate: f64, max_rate: f64) -> Self {
        AdaptiveConfig {
            min_rate,
            max_rate,
            interval: default_interval(),
            failure_rate_threshold: default_failure_rate(),
            latency_threshold: None,
            decrease_factor: default_decrease(),
            increase_step: default_increase(),
            min_calls: default_min_calls(),
        }
    }

    /// Checks every field; errors name the field (under `adaptive.`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let section = |e: ConfigError| e.in_section("adaptive");
        check_positive("min_rate", self.min_rate).map_err(section)?;
        check_positive("max_rate", self.max_rate).map_err(section)?;
        if self.max_rate < self.min_rate {
            return Err(section(ConfigError::new(
                "max_rate",
                self.max_rate,
                format!("must be at least min_rate ({})", self.min_rate),
            )));
        }
        if self.max_rate > MAX_ADAPTIVE_RATE {
            return Err(section(ConfigError::new(
                "max_rate",
                self.max_rate,
                "must be at most 10000000 per second (tokens are spaced in whole nanoseconds; \
                 faster adaptive rates could be off by more than 1%)",
            )));
        }
        check_duration("interval", self.interval).map_err(section)?;
        check_duration_at_most("interval", self.interval, Self::MAX_INTERVAL).map_err(section)?;
        check_ratio("failure_rate_threshold", self.failure_rate_threshold).map_err(section)?;
        if let Some(latency) = self.latency_threshold {
            check_duration("latency_threshold", latency).map_err(section)?;
            check_duration_at_most("latency_threshold", latency, Self::MAX_LATENCY_THRESHOLD)
                .map_err(section)?;
        }
        if !(self.decrease_factor > 0.0 && self.decrease_factor < 1.0) {
            return Err(section(ConfigError::new(
                "decrease_factor",
                self.decrease_factor,
                "must be greater than 0 and less than 1",
            )));
        }
        check_positive("increase_step", self.increase_step).map_err(section)?;
        if self.increase_step > MAX_ADAPTIVE_RATE {
            return Err(section(ConfigError::new(
                "increase_step",
                self.increase_step,
                "must be at most 10000000 per second (the highest adaptive rate)",
            )));
        }
        check_size_at_most("min_calls", self.min_calls, MAX_SIZE).map_err(section)?;
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let mut cfg = AdaptiveConfig::new(10.0, 5.0);
        assert_eq!(cfg.validate().unwrap_err().field(), "adaptive.max_rate");
        cfg.max_rate = 20.0;
        cfg.decrease_factor = 1.0;
        assert_eq!(
            cfg.validate().unwrap_err().field(),
            "adaptive.decrease_factor"
        );
        cfg.decrease_factor = 0.5;
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn absurd_intervals_steps_and_counts_are_refused() {
        let ok = AdaptiveConfig::new(1.0, 100.0);
        let field = |cfg: AdaptiveConfig| cfg.validate().unwrap_err().field().to_owned();
        assert_eq!(
            field(AdaptiveConfig {
                interval: Duration::from_secs(500_000_000_000 * 31_557_600),
                ..ok.clone()
            }),
            "adaptive.interval"
        );
        assert_eq!(
            field(AdaptiveConfig {
                latency_threshold: Some(Duration::MAX),
                ..ok.clone()
            }),
            "adaptive.latency_threshold"
        );
        assert_eq!(
            field(AdaptiveConfig {
                increase_step: 1e300,
                ..ok.clone()
            }),
            "adaptive.increase_step"
        );
        assert_eq!(
            field(AdaptiveConfig {
                min_calls: u64::MAX,
                ..ok.clone()
            }),
            "adaptive.min_calls"
        );
        AdaptiveConfig {
            interval: AdaptiveConfig::MAX_INTERVAL,
            latency_threshold: Some(AdaptiveConfig::MAX_LATENCY_THRESHOLD),
            ..ok
        }
        .validate()
        .expect("the bounds themselves are accepted");
    }
}
