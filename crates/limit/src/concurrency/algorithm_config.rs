//! The algorithms' parameters: [`LimitAlgorithm`], [`AimdConfig`], [`GradientConfig`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{
    check_duration, check_duration_at_most, check_nonzero, check_ratio, check_size_at_most,
    ConfigError,
};

use super::config::ConcurrencyConfig;

/// The rule that moves the limit, chosen by `kind` in a config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitAlgorithm {
    /// Additive increase, multiplicative decrease on failures or slow calls.
    Aimd(AimdConfig),
    /// Follows the ratio of long-term to recent latency (Netflix Gradient2 style).
    Gradient(GradientConfig),
}

impl Default for LimitAlgorithm {
    fn default() -> Self {
        LimitAlgorithm::Aimd(AimdConfig::default())
    }
}

impl LimitAlgorithm {
    /// Checks the algorithm's parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            LimitAlgorithm::Aimd(c) => c.validate(),
            LimitAlgorithm::Gradient(c) => c.validate(),
        }
    }
}

/// AIMD: each failed (or too slow) call multiplies the limit by `backoff_ratio`; each
/// successful call while at least half the limit is in use adds `increase_by`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AimdConfig {
    /// The factor a failure multiplies the limit by, in (0, 1) (default 0.9).
    #[serde(default = "default_backoff")]
    pub backoff_ratio: f64,
    /// What a healthy call adds to the limit (default 1; at most 2^24).
    #[serde(default = "default_increase")]
    pub increase_by: u32,
    /// A successful call slower than this counts as a failure (default: none; at most one
    /// hour).
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub latency_threshold: Option<Duration>,
}

fn default_backoff() -> f64 {
    0.9
}
fn default_increase() -> u32 {
    1
}

impl Default for AimdConfig {
    fn default() -> Self {
        AimdConfig {
            backoff_ratio: default_backoff(),
            increase_by: default_increase(),
            latency_threshold: None,
        }
    }
}

impl AimdConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ratio("backoff_ratio", self.backoff_ratio)?;
        if self.backoff_ratio >= 1.0 {
            return Err(ConfigError::new(
                "backoff_ratio",
                self.backoff_ratio,
                "must be below 1 (a failure has to lower the limit)",
            ));
        }
        check_nonzero("increase_by", self.increase_by)?;
        check_size_at_most(
            "increase_by",
            self.increase_by,
            u64::from(ConcurrencyConfig::MAX_COUNT),
        )?;
        if let Some(t) = self.latency_threshold {
            check_duration("latency_threshold", t)?;
            check_duration_at_most(
                "latency_threshold",
                t,
                ConcurrencyConfig::MAX_LATENCY_THRESHOLD,
            )?;
        }
        Ok(())
    }
}

/// Gradient: the limit is scaled by `tolerance * long_rtt / rtt` (clamped to [0.5, 1]),
/// plus a small `queue_size` headroom, and smoothed; a failure applies the full 0.5 cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GradientConfig {
    /// How much of each new estimate is taken, in (0, 1] (default 0.2).
    #[serde(default = "default_smoothing")]
    pub smoothing: f64,
    /// How much slower than the long-term latency a call may be before the limit drops,
    /// at least 1 (default 1.5).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Samples the long-term latency average spans (default 600; at most 2^24).
    #[serde(default = "default_long_window")]
    pub long_window: u32,
    /// Headroom added to the estimate so the limit can probe upwards (default 4; at most
    /// 2^24).
    #[serde(default = "default_queue")]
    pub queue_size: u32,
}

fn default_smoothing() -> f64 {
    0.2
}
fn default_tolerance() -> f64 {
    1.5
}
fn default_long_window() -> u32 {
    600
}
fn default_queue() -> u32 {
    4
}

impl Default for GradientConfig {
    fn default() -> Self {
        GradientConfig {
            smoothing: default_smoothing(),
            tolerance: default_tolerance(),
            long_window: default_long_window(),
            queue_size: default_queue(),
        }
    }
}

impl GradientConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ratio("smoothing", self.smoothing)?;
        if !(self.tolerance.is_finite() && self.tolerance >= 1.0) {
            return Err(ConfigError::new(
                "tolerance",
                self.tolerance,
                "must be a number of at least 1",
            ));
        }
        check_nonzero("long_window", self.long_window)?;
        let max = u64::from(ConcurrencyConfig::MAX_COUNT);
        check_size_at_most("long_window", self.long_window, max)?;
        check_size_at_most("queue_size", self.queue_size, max)?;
        Ok(())
    }
}

impl From<AimdConfig> for LimitAlgorithm {
    fn from(aimd: AimdConfig) -> Self {
        LimitAlgorithm::Aimd(aimd)
    }
}

impl From<GradientConfig> for LimitAlgorithm {
    fn from(gradient: GradientConfig) -> Self {
        LimitAlgorithm::Gradient(gradient)
    }
}
