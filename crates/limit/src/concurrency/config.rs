//! [`ConcurrencyConfig`]: the serde-readable, validated description of a concurrency limiter.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{
    check_duration, check_duration_at_most, check_nonzero, check_size_at_most, ConfigError,
    MAX_SIZE,
};

use super::algorithm_config::LimitAlgorithm;
use super::config_builder::ConcurrencyConfigBuilder;

/// A concurrency limiter's settings, as read from a config file.
///
/// ```
/// use tower_prism_limit::concurrency::{ConcurrencyConfig, LimitAlgorithm};
///
/// let cfg: ConcurrencyConfig = toml::from_str(r#"
///     initial_limit = 20
///     min_limit = 2
///     max_limit = 200
///     max_wait = "50ms"
///     [algorithm]
///     kind = "gradient"
///     smoothing = 0.2
///     tolerance = 1.5
/// "#).unwrap();
/// cfg.validate().unwrap();
/// assert!(matches!(cfg.algorithm, LimitAlgorithm::Gradient(_)));
///
/// let bad: ConcurrencyConfig = toml::from_str("initial_limit = 500\nmax_limit = 100").unwrap();
/// assert_eq!(
///     bad.validate().unwrap_err().to_string(),
///     "invalid `initial_limit` = 500: must be between min_limit (1) and max_limit (100)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConcurrencyConfig {
    /// The limit to start from (default 20). The adaptive rules find the service's level
    /// from there within a few round trips; it is also what the limit stays at through an
    /// outage under the default rule, which ignores errors.
    #[serde(default = "default_initial")]
    pub initial_limit: u32,
    /// The limit never drops below this (default 1).
    #[serde(default = "default_min")]
    pub min_limit: u32,
    /// The limit never rises above this (default 200); at most
    /// [`MAX_LIMIT`](Self::MAX_LIMIT) (2^24 = 16,777,216).
    #[serde(default = "default_max")]
    pub max_limit: u32,
    /// How long a request may wait for a permit when the limit is reached; none (the
    /// default) rejects at once with [`Error::ConcurrencyLimited`](crate::Error::ConcurrencyLimited).
    /// At most [`MAX_WAIT`](Self::MAX_WAIT) (one minute).
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_wait: Option<Duration>,
    /// How many requests may wait for a permit at once (needs `max_wait`); one arriving
    /// while that many wait is refused at once with
    /// [`Error::ConcurrencyLimited`](crate::Error::ConcurrencyLimited), as .NET's
    /// `ConcurrencyLimiter` refuses one beyond its `QueueLimit`. None (the default): no
    /// cap. From 1 to [`MAX_WAITERS`](Self::MAX_WAITERS) (2^24). Lowered by a reload,
    /// the requests already waiting keep waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_waiters: Option<u32>,
    /// How the limit follows the calls' latency (and, for some rules, their outcomes):
    /// default [`Vegas`](LimitAlgorithm::Vegas), which keeps a short queue in front of the
    /// service and leaves errors to the breaker and retries.
    #[serde(default)]
    pub algorithm: LimitAlgorithm,
}

fn default_initial() -> u32 {
    20
}
fn default_min() -> u32 {
    1
}
fn default_max() -> u32 {
    200
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            initial_limit: default_initial(),
            min_limit: default_min(),
            max_limit: default_max(),
            max_wait: None,
            max_waiters: None,
            algorithm: LimitAlgorithm::default(),
        }
    }
}

impl ConcurrencyConfig {
    /// The highest `max_limit` accepted (core's [`MAX_SIZE`], 2^24 requests in flight);
    /// `min_limit` and `initial_limit` are at most `max_limit`.
    pub const MAX_LIMIT: u32 = MAX_SIZE as u32;
    /// The longest `max_wait` accepted (one minute): no request waits for a permit longer.
    pub const MAX_WAIT: Duration = Duration::from_secs(60);
    /// The largest `max_waiters` accepted (core's [`MAX_SIZE`], 2^24 requests waiting).
    pub const MAX_WAITERS: u32 = MAX_SIZE as u32;
    /// The longest latency threshold (AIMD's `latency_threshold`) accepted (one hour).
    pub const MAX_LATENCY_THRESHOLD: Duration = Duration::from_secs(3600);
    /// The largest count in an algorithm's parameters (AIMD's `increase_by`, the
    /// gradient's `long_window` and `queue_size`): core's [`MAX_SIZE`], 2^24.
    pub const MAX_COUNT: u32 = MAX_SIZE as u32;

    /// A builder, starting from the [defaults](Self::default).
    pub fn builder() -> ConcurrencyConfigBuilder {
        ConcurrencyConfigBuilder::new(Self::default())
    }

    /// A builder starting from this config.
    pub fn to_builder(&self) -> ConcurrencyConfigBuilder {
        ConcurrencyConfigBuilder::new(self.clone())
    }

    /// A fixed limit: initial, min and max all `limit` (no adaptation).
    pub fn fixed(limit: u32) -> Self {
        ConcurrencyConfig {
            initial_limit: limit,
            min_limit: limit,
            max_limit: limit,
            ..ConcurrencyConfig::default()
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_nonzero("min_limit", self.min_limit)?;
        check_nonzero("max_limit", self.max_limit)?;
        check_size_at_most("max_limit", self.max_limit, u64::from(Self::MAX_LIMIT))?;
        if self.min_limit > self.max_limit {
            return Err(ConfigError::new(
                "min_limit",
                self.min_limit,
                format!("must be at most max_limit ({})", self.max_limit),
            ));
        }
        if self.initial_limit < self.min_limit || self.initial_limit > self.max_limit {
            return Err(ConfigError::new(
                "initial_limit",
                self.initial_limit,
                format!(
                    "must be between min_limit ({}) and max_limit ({})",
                    self.min_limit, self.max_limit
                ),
            ));
        }
        if let Some(wait) = self.max_wait {
            check_duration("max_wait", wait)?;
            check_duration_at_most("max_wait", wait, Self::MAX_WAIT)?;
        }
        if let Some(waiters) = self.max_waiters {
            if self.max_wait.is_none() {
                return Err(ConfigError::new(
                    "max_waiters",
                    waiters,
                    "needs max_wait: without it no request waits",
                ));
            }
            check_nonzero("max_waiters", waiters)?;
            check_size_at_most("max_waiters", waiters, u64::from(Self::MAX_WAITERS))?;
        }
        self.algorithm
            .validate()
            .map_err(|e| e.in_section("algorithm"))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::concurrency::{AimdConfig, GradientConfig, VegasConfig};

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let cfg = ConcurrencyConfig::default();
        cfg.validate().unwrap();
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(toml::from_str::<ConcurrencyConfig>(&text).unwrap(), cfg);
        let empty: ConcurrencyConfig = toml::from_str("").unwrap();
        assert_eq!(empty, cfg);
    }

    #[test]
    fn aimd_reads_from_toml() {
        let cfg: ConcurrencyConfig = toml::from_str(
            "[algorithm]\nkind = \"aimd\"\nbackoff_ratio = 0.5\nlatency_threshold = \"200ms\"",
        )
        .unwrap();
        assert_eq!(
            cfg.algorithm,
            LimitAlgorithm::Aimd(AimdConfig {
                backoff_ratio: 0.5,
                increase_by: 1,
                latency_threshold: Some(Duration::from_millis(200)),
            })
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert!(toml::from_str::<ConcurrencyConfig>("limit = 3").is_err());
        let err =
            toml::from_str::<ConcurrencyConfig>("[algorithm]\nkind = \"aimd\"\nsmoothing = 0.3")
                .unwrap_err();
        assert!(err.to_string().contains("smoothing"), "{err}");
        assert!(toml::from_str::<ConcurrencyConfig>("[algorithm]\nkind = \"bbr\"").is_err());
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |cfg: ConcurrencyConfig| cfg.validate().unwrap_err().field().to_owned();
        let base = ConcurrencyConfig::default;
        assert_eq!(
            field(ConcurrencyConfig {
                min_limit: 0,
                ..base()
            }),
            "min_limit"
        );
        assert_eq!(
            field(ConcurrencyConfig {
                max_limit: 0,
                ..base()
            }),
            "max_limit"
        );
        assert_eq!(
            field(ConcurrencyConfig {
                min_limit: 50,
                max_limit: 10,
                initial_limit: 10,
                ..base()
            }),
            "min_limit"
        );
        assert_eq!(
            field(ConcurrencyConfig {
                initial_limit: 0,
                ..base()
            }),
            "initial_limit"
        );
        assert_eq!(
            field(ConcurrencyConfig {
                max_wait: Some(Duration::ZERO),
                ..base()
            }),
            "max_wait"
        );
        // A cap on waiters needs a wait, and lets at least one wait.
        assert_eq!(
            field(ConcurrencyConfig {
                max_waiters: Some(4),
                ..base()
            }),
            "max_waiters"
        );
        assert_eq!(
            field(ConcurrencyConfig {
                max_wait: Some(Duration::from_millis(10)),
                max_waiters: Some(0),
                ..base()
            }),
            "max_waiters"
        );
        let aimd = |a: AimdConfig| ConcurrencyConfig {
            algorithm: LimitAlgorithm::Aimd(a),
            ..base()
        };
        for ratio in [0.0, 1.0, 1.5, f64::NAN] {
            let cfg = aimd(AimdConfig {
                backoff_ratio: ratio,
                ..AimdConfig::default()
            });
            assert_eq!(field(cfg), "algorithm.backoff_ratio", "{ratio}");
        }
        assert_eq!(
            field(aimd(AimdConfig {
                increase_by: 0,
                ..AimdConfig::default()
            })),
            "algorithm.increase_by"
        );
        let grad = |g: GradientConfig| ConcurrencyConfig {
            algorithm: LimitAlgorithm::Gradient(g),
            ..base()
        };
        assert_eq!(
            field(grad(GradientConfig {
                smoothing: 0.0,
                ..GradientConfig::default()
            })),
            "algorithm.smoothing"
        );
        assert_eq!(
            field(grad(GradientConfig {
                tolerance: 0.9,
                ..GradientConfig::default()
            })),
            "algorithm.tolerance"
        );
        assert_eq!(
            field(grad(GradientConfig {
                long_window: 0,
                ..GradientConfig::default()
            })),
            "algorithm.long_window"
        );
        let vegas = |v: VegasConfig| ConcurrencyConfig {
            algorithm: LimitAlgorithm::Vegas(v),
            ..base()
        };
        let v = VegasConfig::default;
        assert_eq!(
            field(vegas(VegasConfig { alpha: 0, ..v() })),
            "algorithm.alpha"
        );
        assert_eq!(
            field(vegas(VegasConfig { beta: 2, ..v() })),
            "algorithm.beta"
        );
        assert_eq!(
            field(vegas(VegasConfig {
                probe_rounds: 1,
                ..v()
            })),
            "algorithm.probe_rounds"
        );
        assert_eq!(
            field(vegas(VegasConfig {
                probe_rounds: u32::MAX,
                ..v()
            })),
            "algorithm.probe_rounds"
        );
        ConcurrencyConfig::fixed(7).validate().unwrap();
    }

    #[test]
    fn the_default_algorithm_is_vegas_and_reads_from_toml() {
        assert_eq!(
            ConcurrencyConfig::default().algorithm,
            LimitAlgorithm::Vegas(VegasConfig::default())
        );
        let cfg: ConcurrencyConfig =
            toml::from_str("[algorithm]\nkind = \"vegas\"\nalpha = 3\nbeta = 6").unwrap();
        assert_eq!(
            cfg.algorithm,
            LimitAlgorithm::Vegas(VegasConfig {
                alpha: 3,
                beta: 6,
                probe_rounds: 20,
            })
        );
    }

    /// Regression (issue 10, item 8): absurd sizes and durations passed validation.
    #[test]
    fn absurd_sizes_and_durations_are_refused_beyond_their_documented_bounds() {
        let field = |cfg: ConcurrencyConfig| {
            let err = cfg.validate().unwrap_err();
            assert!(err.reason().starts_with("must be at most"), "{err}");
            err.field().to_owned()
        };
        let base = ConcurrencyConfig::default;
        let eons = Duration::from_secs(500_000_000_000 * 31_557_600);
        assert_eq!(field(ConcurrencyConfig::fixed(u32::MAX)), "max_limit");
        assert_eq!(
            field(ConcurrencyConfig::fixed(ConcurrencyConfig::MAX_LIMIT + 1)),
            "max_limit"
        );
        assert_eq!(
            field(ConcurrencyConfig {
                max_wait: Some(eons),
                ..base()
            }),
            "max_wait"
        );
        assert_eq!(
            field(ConcurrencyConfig {
                max_wait: Some(Duration::from_millis(10)),
                max_waiters: Some(ConcurrencyConfig::MAX_WAITERS + 1),
                ..base()
            }),
            "max_waiters"
        );
        let aimd = |a: AimdConfig| ConcurrencyConfig {
            algorithm: LimitAlgorithm::Aimd(a),
            ..base()
        };
        assert_eq!(
            field(aimd(AimdConfig {
                latency_threshold: Some(eons),
                ..AimdConfig::default()
            })),
            "algorithm.latency_threshold"
        );
        assert_eq!(
            field(aimd(AimdConfig {
                increase_by: u32::MAX,
                ..AimdConfig::default()
            })),
            "algorithm.increase_by"
        );
        let grad = |g: GradientConfig| ConcurrencyConfig {
            algorithm: LimitAlgorithm::Gradient(g),
            ..base()
        };
        assert_eq!(
            field(grad(GradientConfig {
                long_window: u32::MAX,
                ..GradientConfig::default()
            })),
            "algorithm.long_window"
        );
        assert_eq!(
            field(grad(GradientConfig {
                queue_size: u32::MAX,
                ..GradientConfig::default()
            })),
            "algorithm.queue_size"
        );
        // The bounds themselves are accepted.
        ConcurrencyConfig {
            max_wait: Some(ConcurrencyConfig::MAX_WAIT),
            max_waiters: Some(ConcurrencyConfig::MAX_WAITERS),
            ..ConcurrencyConfig::fixed(ConcurrencyConfig::MAX_LIMIT)
        }
        .validate()
        .unwrap();
    }
}
