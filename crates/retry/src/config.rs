//! [`RetryConfig`]: what a `[policy.<name>.retry]` section holds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{check_duration, check_nonzero, check_positive, ConfigError};

use crate::backoff::Backoff;

/// Retry settings. Every field has a default, so an empty section is a valid config:
/// 3 attempts, exponential backoff from 50 ms to 2 s with full jitter, a 20 % retry budget.
///
/// ```
/// use std::time::Duration;
/// use tower_prism_retry::{Jitter, RetryConfig};
///
/// let config: RetryConfig = toml::from_str(r#"
///     max_attempts = 4
///     max_elapsed = "5s"
///     attempt_timeout = "800ms"
///     backoff = { kind = "exponential", base = "50ms", max = "2s", jitter = "decorrelated" }
///     budget = { ratio = 0.1, min_per_second = 5 }
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.max_elapsed, Some(Duration::from_secs(5)));
/// assert_eq!(config.backoff.jitter, Jitter::Decorrelated);
/// assert_eq!(config.budget.window, Duration::from_secs(10)); // a default
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The wait before each retry.
    pub backoff: Backoff,
    /// No retry starts later than this after the call began (an attempt in flight is not
    /// cut short; use `attempt_timeout` for that). Longer `Retry-After` hints give up.
    #[serde(
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_elapsed: Option<Duration>,
    /// Each attempt is abandoned after this long (a retryable failure).
    #[serde(
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<Duration>,
    /// Wait at least as long as a `Retry-After` header or an error's retry-after hint says.
    pub honor_retry_after: bool,
    /// The retry budget shared by every clone.
    pub budget: BudgetConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            backoff: Backoff::default(),
            max_elapsed: None,
            attempt_timeout: None,
            honor_retry_after: true,
            budget: BudgetConfig::default(),
        }
    }
}

impl RetryConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_nonzero("max_attempts", self.max_attempts)?;
        self.backoff.validate()?;
        if let Some(d) = self.max_elapsed {
            check_duration("max_elapsed", d)?;
        }
        if let Some(d) = self.attempt_timeout {
            check_duration("attempt_timeout", d)?;
        }
        self.budget.validate().map_err(|e| e.in_section("budget"))
    }
}

/// The retry budget: within a sliding `window`, retries may not exceed `ratio` times the
/// first attempts plus `min_per_second` (a floor, so that a quiet service can still retry).
/// With a health signal and `unhealthy_ratio`, the ratio drops to `unhealthy_ratio` while
/// the circuit is open or the failure rate is at least `unhealthy_failure_rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// `false` turns the budget off (every retry allowed by `max_attempts` happens).
    pub enabled: bool,
    /// Retries allowed per first attempt, e.g. `0.2` = 20 %. At most 10.
    pub ratio: f64,
    /// Retries per second always allowed, whatever the traffic.
    pub min_per_second: u32,
    /// How long a first attempt counts towards the budget (at least 1 s).
    #[serde(with = "tower_prism_core::config::duration")]
    pub window: Duration,
    /// The ratio while downstream is unhealthy (needs a health signal). At most `ratio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_ratio: Option<f64>,
    /// The failure rate from which downstream counts as unhealthy.
    pub unhealthy_failure_rate: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            enabled: true,
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
            unhealthy_ratio: None,
            unhealthy_failure_rate: 0.5,
        }
    }
}

impl BudgetConfig {
    /// Checks every field (names relative to the `budget` section).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ratio_up_to_10("ratio", self.ratio)?;
        if self.window < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "window",
                humantime::format_duration(self.window),
                "must be at least 1s",
            ));
        }
        if let Some(r) = self.unhealthy_ratio {
            check_ratio_up_to_10("unhealthy_ratio", r)?;
            if r > self.ratio {
                return Err(ConfigError::new(
                    "unhealthy_ratio",
                    r,
                    format!("must be at most `ratio` ({})", self.ratio),
                ));
            }
        }
        tower_prism_core::config::check_ratio(
            "unhealthy_failure_rate",
            self.unhealthy_failure_rate,
        )?;
        Ok(())
    }
}

fn check_ratio_up_to_10(field: &'static str, value: f64) -> Result<(), ConfigError> {
    check_positive(field, value)?;
    if value > 10.0 {
        return Err(ConfigError::new(field, value, "must be at most 10"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::{BackoffKind, Jitter};

    #[test]
    fn empty_section_is_the_default() {
        let c: RetryConfig = toml::from_str("").unwrap();
        assert_eq!(c, RetryConfig::default());
        c.validate().unwrap();
    }

    #[test]
    fn round_trips_through_toml() {
        let mut c = RetryConfig {
            max_attempts: 5,
            max_elapsed: Some(Duration::from_secs(3)),
            attempt_timeout: Some(Duration::from_millis(250)),
            ..RetryConfig::default()
        };
        c.backoff.kind = BackoffKind::Linear;
        c.backoff.jitter = Jitter::Equal;
        c.budget.unhealthy_ratio = Some(0.05);
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<RetryConfig>(&text).unwrap(), c);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        let err = toml::from_str::<RetryConfig>("max_atempts = 3").unwrap_err();
        assert!(err.to_string().contains("max_atempts"), "{err}");
        let err = toml::from_str::<RetryConfig>("backoff = { kind = \"cubic\" }").unwrap_err();
        assert!(err.to_string().contains("cubic"), "{err}");

        let bad = |f: fn(&mut RetryConfig)| {
            let mut c = RetryConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field().to_string()
        };
        assert_eq!(bad(|c| c.max_attempts = 0), "max_attempts");
        assert_eq!(bad(|c| c.max_elapsed = Some(Duration::ZERO)), "max_elapsed");
        assert_eq!(
            bad(|c| c.attempt_timeout = Some(Duration::ZERO)),
            "attempt_timeout"
        );
        assert_eq!(
            bad(|c| c.backoff.max = Duration::from_millis(1)),
            "backoff.max"
        );
        assert_eq!(bad(|c| c.budget.ratio = 0.0), "budget.ratio");
        assert_eq!(bad(|c| c.budget.ratio = 11.0), "budget.ratio");
        assert_eq!(
            bad(|c| c.budget.window = Duration::from_millis(10)),
            "budget.window"
        );
        assert_eq!(
            bad(|c| c.budget.unhealthy_ratio = Some(0.5)),
            "budget.unhealthy_ratio"
        );
        assert_eq!(
            bad(|c| c.budget.unhealthy_failure_rate = 1.5),
            "budget.unhealthy_failure_rate"
        );
    }
}
