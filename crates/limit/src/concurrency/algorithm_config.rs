//! The algorithms' parameters: [`LimitAlgorithm`], [`VegasConfig`], [`AimdConfig`],
//! [`GradientConfig`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{
    check_duration, check_duration_at_most, check_nonzero, check_ratio, check_size_at_most,
    ConfigError,
};

use super::config::ConcurrencyConfig;

/// The rule that moves the limit, chosen by `kind` in a config file (default `vegas`).
///
/// [`Vegas`](Self::Vegas), the default, follows the queue the limit builds in front of the
/// service, measured against the service's own no-load latency, and ignores errors (they
/// are the breaker's and the retries' business): under overload it keeps latency near the
/// no-load value at full throughput, and in an outage or a brownout it neither collapses
/// nor sheds calls the service could serve. [`Aimd`](Self::Aimd) and
/// [`Gradient`](Self::Gradient) also read failures as overload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitAlgorithm {
    /// Keeps the estimated queue (requests waiting in the service beyond the no-load
    /// latency) between `alpha` and `beta` (TCP Vegas style); the default.
    Vegas(VegasConfig),
    /// Additive increase, multiplicative decrease on failures or slow calls.
    Aimd(AimdConfig),
    /// Follows the ratio of long-term to recent latency (Netflix Gradient2 style).
    Gradient(GradientConfig),
}

impl Default for LimitAlgorithm {
    fn default() -> Self {
        LimitAlgorithm::Vegas(VegasConfig::default())
    }
}

impl LimitAlgorithm {
    /// Checks the algorithm's parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            LimitAlgorithm::Vegas(c) => c.validate(),
            LimitAlgorithm::Aimd(c) => c.validate(),
            LimitAlgorithm::Gradient(c) => c.validate(),
        }
    }
}

/// Vegas (the default): the limit follows the queue it builds in front of the service.
///
/// Calls are taken in rounds of `limit` successes (about one round trip). A round's mean
/// latency, against the service's no-load latency (the lowest round mean of the last
/// `probe_rounds` to `2 * probe_rounds` rounds), tells how many of the calls in flight were
/// waiting in the service rather than being served. Below `alpha` waiting calls per 10
/// being served the limit grows by one (if at least half of it was in use); above `beta`
/// per 10 it is cut back between the two. Up to 10 calls served, the thresholds are `alpha`
/// and `beta` calls; a service of 30 slots keeps three times that queue, so the queue's
/// share of the latency does not depend on the service's size. So the service keeps
/// a short queue, enough to stay busy, and the latency stays near its no-load value however
/// much more is offered: the excess is refused at once (or waits up to `max_wait`).
///
/// Every `probe_rounds` rounds under load, one round runs at 3/4 of the limit, so that a
/// standing queue cannot pass for the no-load latency (a start under overload), and a
/// service that became slower for good is relearnt within two windows.
///
/// Only successes are read: failures (fast errors of a dead service, timeouts) say nothing
/// about queueing, so they neither move the limit nor pull the no-load latency down; a
/// success counts for at most twice the no-load latency, so that stragglers (calls retried
/// after a backoff below the limiter) do not pass for a queue. In an
/// outage the limit stays where it was and every failure reaches the breaker below; in a
/// brownout nothing the service could serve is shed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VegasConfig {
    /// Requests queued per 10 being served (and at least this many) below which the limit
    /// grows (default 2; at least 1).
    #[serde(default = "default_alpha")]
    pub alpha: u32,
    /// Requests queued per 10 being served (and at least this many) above which the limit
    /// is cut back (default 4; above `alpha`, at most 2^24).
    #[serde(default = "default_beta")]
    pub beta: u32,
    /// Rounds between two probes of the no-load latency (default 20, about 20 round trips;
    /// at least 2, at most 2^24).
    #[serde(default = "default_probe_rounds")]
    pub probe_rounds: u32,
}

fn default_alpha() -> u32 {
    2
}
fn default_beta() -> u32 {
    4
}
fn default_probe_rounds() -> u32 {
    20
}

impl Default for VegasConfig {
    fn default() -> Self {
        VegasConfig {
            alpha: default_alpha(),
            beta: default_beta(),
            probe_rounds: default_probe_rounds(),
        }
    }
}

impl VegasConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let max = u64::from(ConcurrencyConfig::MAX_COUNT);
        check_nonzero("alpha", self.alpha)?;
        check_size_at_most("beta", self.beta, max)?;
        if self.beta <= self.alpha {
            return Err(ConfigError::new(
                "beta",
                self.beta,
                format!("must be above alpha ({})", self.alpha),
            ));
        }
        if self.probe_rounds < 2 {
            return Err(ConfigError::new(
                "probe_rounds",
                self.probe_rounds,
                "must be at least 2",
            ));
        }
        check_size_at_most("probe_rounds", self.probe_rounds, max)?;
        Ok(())
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

impl From<VegasConfig> for LimitAlgorithm {
    fn from(vegas: VegasConfig) -> Self {
        LimitAlgorithm::Vegas(vegas)
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
