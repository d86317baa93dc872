//! [`RateLimitConfig`]: the serde-readable, validated description of a limiter.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{check_duration, check_nonzero, ConfigError};

use crate::adaptive::AdaptiveConfig;
use crate::bucket::Quota;

/// A rate limiter's settings, as read from a config file.
///
/// ```
/// use tower_prism_ratelimit::RateLimitConfig;
///
/// let cfg: RateLimitConfig = toml::from_str(r#"
///     rate = 100
///     period = "1s"
///     burst = 20
///     queue_size = 50
///     max_wait = "250ms"
/// "#).unwrap();
/// cfg.validate().unwrap();
///
/// let bad: RateLimitConfig = toml::from_str("rate = 0").unwrap();
/// assert_eq!(bad.validate().unwrap_err().to_string(), "invalid `rate` = 0: must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Tokens added per `period`.
    pub rate: u32,
    /// The period `rate` is counted over (default one second).
    #[serde(
        default = "default_period",
        with = "tower_prism_core::config::duration"
    )]
    pub period: Duration,
    /// Tokens the bucket holds when full; defaults to `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests that may wait for a token; 0 (the default) rejects at once.
    #[serde(default)]
    pub queue_size: usize,
    /// The longest a request waits in the queue; required when `queue_size` > 0.
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_wait: Option<Duration>,
    /// Keys a per-key limiter tracks at most.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// A key whose bucket has been full this long is forgotten.
    #[serde(default = "default_idle", with = "tower_prism_core::config::duration")]
    pub idle_timeout: Duration,
    /// Adaptive rate bounds and reactions (the health signal is given in code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveConfig>,
}

fn default_period() -> Duration {
    Duration::from_secs(1)
}
fn default_max_keys() -> usize {
    10_000
}
fn default_idle() -> Duration {
    Duration::from_secs(60)
}

impl RateLimitConfig {
    /// `rate` tokens per `period`, burst `rate`, no queue, other fields defaulted.
    pub fn new(rate: u32, period: Duration) -> Self {
        RateLimitConfig {
            rate,
            period,
            burst: None,
            queue_size: 0,
            max_wait: None,
            max_keys: default_max_keys(),
            idle_timeout: default_idle(),
            adaptive: None,
        }
    }

    /// The burst in effect (`burst`, or `rate` when unset).
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    /// Checks every field; an error names the field, the bad value and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_nonzero("rate", self.rate)?;
        check_duration("period", self.period)?;
        if let Some(burst) = self.burst {
            check_nonzero("burst", burst)?;
        }
        if self.interval_nanos() == 0 {
            return Err(ConfigError::new(
                "rate",
                self.rate,
                format!(
                    "must be at most one per nanosecond of the period ({})",
                    humantime::format_duration(self.period)
                ),
            ));
        }
        match (self.queue_size, self.max_wait) {
            (0, Some(wait)) => {
                return Err(ConfigError::new(
                    "max_wait",
                    humantime::format_duration(wait),
                    "needs a queue: set queue_size to at least 1",
                ))
            }
            (n, None) if n > 0 => {
                return Err(ConfigError::new(
                    "queue_size",
                    n,
                    "needs max_wait, so that no request waits forever",
                ))
            }
            (_, Some(wait)) => {
                check_duration("max_wait", wait)?;
            }
            _ => {}
        }
        check_nonzero("max_keys", self.max_keys)?;
        check_duration("idle_timeout", self.idle_timeout)?;
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate()?;
        }
        Ok(())
    }

    fn interval_nanos(&self) -> u64 {
        u64::try_from(self.period.as_nanos() / u128::from(self.rate.max(1))).unwrap_or(u64::MAX)
    }

    /// The bucket shape this config describes.
    pub(crate) fn quota(&self) -> Quota {
        Quota {
            interval_nanos: self.interval_nanos().max(1),
            burst: self.effective_burst().max(1),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn field_of(cfg: &RateLimitConfig) -> String {
        cfg.validate().unwrap_err().field().to_owned()
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = RateLimitConfig::new(10, Duration::from_secs(1));
        assert!(ok.validate().is_ok());
        assert_eq!(
            field_of(&RateLimitConfig {
                rate: 0,
                ..ok.clone()
            }),
            "rate"
        );
        assert_eq!(
            field_of(&RateLimitConfig {
                period: Duration::ZERO,
                ..ok.clone()
            }),
            "period"
        );
        assert_eq!(
            field_of(&RateLimitConfig {
                burst: Some(0),
                ..ok.clone()
            }),
            "burst"
        );
        assert_eq!(
            field_of(&RateLimitConfig {
                max_wait: Some(Duration::from_millis(5)),
                ..ok.clone()
            }),
            "max_wait"
        );
        assert_eq!(
            field_of(&RateLimitConfig {
                queue_size: 4,
                ..ok.clone()
            }),
            "queue_size"
        );
        assert_eq!(
            field_of(&RateLimitConfig {
                max_keys: 0,
                ..ok.clone()
            }),
            "max_keys"
        );
        assert_eq!(
            field_of(&RateLimitConfig {
                rate: 10,
                period: Duration::from_nanos(5),
                ..ok.clone()
            }),
            "rate"
        );
        let err = RateLimitConfig {
            queue_size: 4,
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("needs max_wait"), "{err}");
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_refused() {
        assert!(toml::from_str::<RateLimitConfig>("rate = 1\nbursts = 2").is_err());
        assert!(toml::from_str::<RateLimitConfig>("rate = 1\nperiod = \"soon\"").is_err());
        let cfg: RateLimitConfig = toml::from_str("rate = 5\nperiod = \"2s\"").unwrap();
        assert_eq!(
            cfg.quota(),
            Quota {
                interval_nanos: 400_000_000,
                burst: 5
            }
        );
    }
}
