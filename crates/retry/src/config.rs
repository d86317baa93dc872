//! [`RetryConfig`]: what a `[policy.<name>.retry]` section holds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{
    check_duration, check_duration_at_most, check_nonzero, check_positive, check_size_at_most,
    ConfigError, MAX_SIZE,
};

use crate::backoff::Backoff;
use crate::hedge_config::HedgeConfig;

/// The most attempts per call `max_attempts` accepts. Past a handful, more attempts only
/// add load to an upstream that is already failing; 100 leaves room for odd cases.
pub const MAX_ATTEMPTS: u32 = 100;

/// The longest single wait the retry stage accepts in a config: `backoff.base`,
/// `backoff.max` and `max_retry_after` (one hour).
pub const MAX_WAIT: Duration = Duration::from_secs(60 * 60);

/// The longest `max_elapsed`, `attempt_timeout` and budget `window` accepted (one day).
pub const MAX_CALL: Duration = Duration::from_secs(24 * 60 * 60);

/// The default `max_retry_after`: 30 s.
///
/// Envoy's rate-limited retry back-off drops a reset header above its `max_interval`, and
/// Microsoft's standard resilience handler honours `Retry-After` only within its 30 s
/// total request timeout; 30 s is the latter, long enough for the common "come back in a
/// few seconds" answers (a per-second or per-10-seconds quota rolling over) and short
/// enough that a few callers told to wait a year cannot hold a concurrency limit's
/// permits for more than half a minute.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Retry settings. Every field has a default, so an empty section is a valid config:
/// 3 attempts, exponential backoff from 50 ms to 2 s with full jitter, a retry budget that
/// earns half a retry per success plus 10 retries per second, `Retry-After` hints honoured
/// up to 30 s.
///
/// Every wait is bounded. One retry waits at most `max(backoff.max, max_retry_after)`
/// (both at most [`MAX_WAIT`]); a hint longer than `max_retry_after` (or than what is left
/// of `max_elapsed`) ends the call at once with the answer that carried it. An attempt
/// lasts at most `attempt_timeout` when one is set (at most [`MAX_CALL`]); without one, the
/// retry stage waits for the inner service as long as it takes, so bound it above (a
/// deadline stage, `tower::timeout`) or set `attempt_timeout`. With `attempt_timeout`
/// set, a whole call lasts at most
/// `max_attempts * attempt_timeout + (max_attempts - 1) * max(backoff.max, max_retry_after)`
/// without hedging. With hedging each hedge has its own `attempt_timeout` from when it was
/// sent, as in Polly, and a round ends when its attempts have all ended, so a round lasts
/// at most `(1 + hedge.max_hedged) * attempt_timeout` and the call
/// `max_attempts * (1 + hedge.max_hedged) * attempt_timeout`
/// `+ (max_attempts - 1) * max(backoff.max, max_retry_after)`. No retry starts later than
/// `max_elapsed` after the call began; one bound on the whole call, whatever the settings,
/// is a deadline stage's. (Before a retry the stage also waits for the inner service to be
/// ready, as any caller would; a service that never gets ready is bounded by whatever
/// bounds its callers, such as a deadline above.)
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
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts per call, the first included (1 = never retry; at most [`MAX_ATTEMPTS`]).
    /// The `tower-prism` facade's gRPC client profile (`grpc()`) runs a larger value as 5,
    /// with a warning, as gRFC A6 has gRPC clients do, and refuses one over 1 with `hedge`
    /// ([`RetryLayerBuilder::exclusive_hedging`](crate::RetryLayerBuilder::exclusive_hedging)).
    pub max_attempts: u32,
    /// The wait before each retry.
    pub backoff: Backoff,
    /// No retry starts later than this after the call began (an attempt in flight is not
    /// cut short; use `attempt_timeout` for that). Longer `Retry-After` hints give up.
    /// At most [`MAX_CALL`].
    #[serde(
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_elapsed: Option<Duration>,
    /// Each attempt is abandoned after this long (a retryable failure). At most
    /// [`MAX_CALL`]. Without it, an attempt lasts as long as the inner service takes.
    #[serde(
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<Duration>,
    /// Wait at least as long as a `Retry-After` header or an error's retry-after hint says.
    /// After such a wait the backoff starts over: the next retry waits its first delay
    /// (gRFC A6 on pushback).
    pub honor_retry_after: bool,
    /// The longest `Retry-After` hint (a response header, or an error's retry-after)
    /// waited out; default 30 s ([`DEFAULT_MAX_RETRY_AFTER`]), at most [`MAX_WAIT`]. A
    /// longer hint, or one longer than what is left of `max_elapsed`, ends the call at
    /// once: a response comes back unchanged (its `Retry-After` intact, for a server to
    /// pass on), an error comes back as it is (still carrying its hint). With
    /// `honor_retry_after = false` hints are ignored and this has no effect.
    #[serde(with = "tower_prism_core::config::duration")]
    pub max_retry_after: Duration,
    /// The retry budget shared by every clone.
    pub budget: BudgetConfig,
    /// Hedging (`[retry.hedge]`): send the same request again when an attempt goes
    /// unanswered for a while or fails, and take the first acceptable answer. Off when
    /// absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge: Option<HedgeConfig>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            backoff: Backoff::default(),
            max_elapsed: None,
            attempt_timeout: None,
            honor_retry_after: true,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            budget: BudgetConfig::default(),
            hedge: None,
        }
    }
}

impl RetryConfig {
    /// A builder starting from the defaults; [`build`](RetryConfigBuilder::build)
    /// validates.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_prism_retry::{Backoff, RetryConfig};
    ///
    /// let config = RetryConfig::builder()
    ///     .max_attempts(4)
    ///     .backoff(Backoff::fixed(Duration::from_millis(10)))
    ///     .no_budget()
    ///     .build()
    ///     .unwrap();
    /// assert!(!config.budget.enabled);
    /// assert!(RetryConfig::builder().max_attempts(0).build().is_err());
    /// ```
    pub fn builder() -> RetryConfigBuilder {
        RetryConfigBuilder {
            config: RetryConfig::default(),
        }
    }

    /// Checks every field, upper bounds included; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_nonzero("max_attempts", self.max_attempts)?;
        check_size_at_most("max_attempts", self.max_attempts, u64::from(MAX_ATTEMPTS))?;
        self.backoff.validate()?;
        if let Some(d) = self.max_elapsed {
            check_duration("max_elapsed", d)?;
            check_duration_at_most("max_elapsed", d, MAX_CALL)?;
        }
        if let Some(d) = self.attempt_timeout {
            check_duration("attempt_timeout", d)?;
            check_duration_at_most("attempt_timeout", d, MAX_CALL)?;
        }
        check_duration_at_most("max_retry_after", self.max_retry_after, MAX_WAIT)?;
        if let Some(hedge) = &self.hedge {
            hedge.validate().map_err(|e| e.in_section("hedge"))?;
        }
        self.budget.validate().map_err(|e| e.in_section("budget"))
    }

    /// The check of a stage that hedges or retries, never both
    /// ([`RetryLayerBuilder::exclusive_hedging`](crate::RetryLayerBuilder::exclusive_hedging)):
    /// `hedge` with `max_attempts` over 1 is refused. The error names `max_attempts`: with
    /// hedging it counts rounds, and its default of 3 is the likelier slip.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_prism_retry::{HedgeConfig, RetryConfig};
    ///
    /// let hedged = RetryConfig::builder()
    ///     .hedge(HedgeConfig::fixed(Duration::from_millis(20)))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(hedged.check_exclusive_hedging().unwrap_err().field(), "max_attempts");
    /// let mut hedging = hedged;
    /// hedging.max_attempts = 1;
    /// assert!(hedging.check_exclusive_hedging().is_ok());
    /// assert!(RetryConfig::default().check_exclusive_hedging().is_ok());
    /// ```
    pub fn check_exclusive_hedging(&self) -> Result<(), ConfigError> {
        if self.hedge.is_some() && self.max_attempts > 1 {
            return Err(ConfigError::new(
                "max_attempts",
                self.max_attempts,
                "must be 1 with `hedge`: this stage hedges or retries, never both (gRFC A6: \
                 a gRPC method has a retry policy or a hedging policy), so that a call makes \
                 at most `1 + hedge.max_hedged` attempts; set `max_attempts = 1` to hedge, or \
                 remove `hedge` to retry",
            ));
        }
        Ok(())
    }
}

/// The retry budget: within a sliding `window`, retries may not exceed what recent calls
/// earned, `success_ratio` per successful attempt plus `ratio` per first attempt, plus
/// `min_per_second` (a floor, so that a quiet service can still retry). With a health
/// signal and `unhealthy_ratio`, the budget tightens while the circuit is open or the
/// failure rate is at least `unhealthy_failure_rate`.
///
/// By default the budget earns on success only: half a retry per successful attempt, and
/// 10 retries per second whatever happens. While an upstream fails a fraction of calls, the
/// calls that succeed pay for retrying the ones that do not (a 25 % brownout has about
/// three successes per failure, so nearly every failure gets its retries); while it fails
/// every call, nothing is earned and retries fall to the floor. A budget that earns per first attempt whatever the outcome (Finagle's, and
/// tower's `TpsBudget`; this crate's default in 0.1 was `ratio = 0.2`) cannot do both: a
/// ratio high enough for a brownout's retries also lets them multiply the load on an
/// upstream that is down.
///
/// ```
/// use tower_prism_retry::BudgetConfig;
///
/// // The budget of earlier versions: 20 % of first attempts, whatever their outcome.
/// let per_attempt: BudgetConfig =
///     toml::from_str("ratio = 0.2\nsuccess_ratio = 0.0").unwrap();
/// per_attempt.validate().unwrap();
/// assert_eq!(BudgetConfig::default().success_ratio, 0.5);
/// assert_eq!(BudgetConfig::default().ratio, 0.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BudgetConfig {
    /// `false` turns the budget off (every retry allowed by `max_attempts` happens).
    pub enabled: bool,
    /// Retries earned per first attempt, whatever its outcome, e.g. `0.2` = 20 %; default
    /// 0 (first attempts earn nothing). At most 10.
    pub ratio: f64,
    /// Retries earned per successful attempt (first or retry), e.g. `0.5` = one retry per
    /// two successes; default 0.5. Failures earn nothing, so a dead upstream gets only the
    /// `min_per_second` floor. At most 10; 0 turns earning on success off.
    pub success_ratio: f64,
    /// Retries per second always allowed, whatever the traffic (at most
    /// [`MAX_SIZE`](tower_prism_core::config::MAX_SIZE)).
    pub min_per_second: u32,
    /// How long a first attempt counts towards the budget (at least 1 s, at most a day).
    #[serde(with = "tower_prism_core::config::duration")]
    pub window: Duration,
    /// The earning ratio while downstream is unhealthy (needs a health signal): every retry
    /// then costs `r / unhealthy_ratio` retries, where `r` is `ratio` when it is above 0 and
    /// `success_ratio` otherwise, so that `r` drops to `unhealthy_ratio` (and the other
    /// ratio in proportion). At most `r`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_ratio: Option<f64>,
    /// The failure rate from which downstream counts as unhealthy.
    pub unhealthy_failure_rate: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            enabled: true,
            ratio: 0.0,
            success_ratio: 0.5,
            min_per_second: 10,
            window: Duration::from_secs(10),
            unhealthy_ratio: None,
            unhealthy_failure_rate: 0.5,
        }
    }
}

impl BudgetConfig {
    /// A builder starting from the defaults; [`build`](BudgetConfigBuilder::build)
    /// validates.
    ///
    /// ```
    /// use tower_prism_retry::BudgetConfig;
    ///
    /// let budget = BudgetConfig::builder().ratio(0.1).min_per_second(5).build().unwrap();
    /// assert_eq!(budget.min_per_second, 5);
    /// ```
    pub fn builder() -> BudgetConfigBuilder {
        BudgetConfigBuilder {
            config: BudgetConfig::default(),
        }
    }

    /// Checks every field (names relative to the `budget` section).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ratio_up_to_10("ratio", self.ratio)?;
        check_ratio_up_to_10("success_ratio", self.success_ratio)?;
        if self.window < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "window",
                humantime::format_duration(self.window),
                "must be at least 1s",
            ));
        }
        check_duration_at_most("window", self.window, MAX_CALL)?;
        check_size_at_most("min_per_second", self.min_per_second, MAX_SIZE)?;
        if let Some(r) = self.unhealthy_ratio {
            check_positive("unhealthy_ratio", r)?;
            let (name, reference) = self.reference_ratio();
            if r > reference {
                return Err(ConfigError::new(
                    "unhealthy_ratio",
                    r,
                    format!("must be at most `{name}` ({reference})"),
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

impl BudgetConfig {
    /// The ratio `unhealthy_ratio` replaces: `ratio` when first attempts earn, else
    /// `success_ratio`.
    pub(crate) fn reference_ratio(&self) -> (&'static str, f64) {
        if self.ratio > 0.0 {
            ("ratio", self.ratio)
        } else {
            ("success_ratio", self.success_ratio)
        }
    }
}

/// Builds a [`RetryConfig`], one setter per field ([`RetryConfig::builder`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryConfigBuilder {
    config: RetryConfig,
}

impl RetryConfigBuilder {
    /// Attempts per call, the first included.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = n;
        self
    }

    /// The wait before each retry.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// No retry starts later than this after the call began.
    pub fn max_elapsed(mut self, d: Duration) -> Self {
        self.config.max_elapsed = Some(d);
        self
    }

    /// Abandons each attempt after `d` (a retryable failure).
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.config.attempt_timeout = Some(d);
        self
    }

    /// Whether to wait at least as long as `Retry-After` hints say (default `true`).
    pub fn honor_retry_after(mut self, yes: bool) -> Self {
        self.config.honor_retry_after = yes;
        self
    }

    /// The longest `Retry-After` hint waited out (default 30 s, at most one hour); a
    /// longer hint ends the call at once with the answer that carried it.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.config.max_retry_after = d;
        self
    }

    /// The retry budget's settings.
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.config.budget = budget;
        self
    }

    /// Hedging: another copy of the request after a delay with no answer, or at once
    /// when an attempt fails.
    pub fn hedge(mut self, hedge: HedgeConfig) -> Self {
        self.config.hedge = Some(hedge);
        self
    }

    /// No retry budget: every retry `max_attempts` allows happens.
    pub fn no_budget(mut self) -> Self {
        self.config.budget.enabled = false;
        self
    }

    /// Validates the config (the error names the first bad field).
    pub fn build(self) -> Result<RetryConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// Builds a [`BudgetConfig`], one setter per field ([`BudgetConfig::builder`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct BudgetConfigBuilder {
    config: BudgetConfig,
}

impl BudgetConfigBuilder {
    /// `false` turns the budget off.
    pub fn enabled(mut self, yes: bool) -> Self {
        self.config.enabled = yes;
        self
    }

    /// Retries earned per first attempt, e.g. `0.2` = 20 % (default 0).
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.config.ratio = ratio;
        self
    }

    /// Retries earned per successful attempt, e.g. `0.5` (the default).
    pub fn success_ratio(mut self, ratio: f64) -> Self {
        self.config.success_ratio = ratio;
        self
    }

    /// Retries per second always allowed, whatever the traffic.
    pub fn min_per_second(mut self, n: u32) -> Self {
        self.config.min_per_second = n;
        self
    }

    /// How long a first attempt counts towards the budget.
    pub fn window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// The earning ratio while downstream is unhealthy (needs a health signal).
    pub fn unhealthy_ratio(mut self, ratio: f64) -> Self {
        self.config.unhealthy_ratio = Some(ratio);
        self
    }

    /// The failure rate from which downstream counts as unhealthy.
    pub fn unhealthy_failure_rate(mut self, rate: f64) -> Self {
        self.config.unhealthy_failure_rate = rate;
        self
    }

    /// Validates the config (field names relative to the `budget` section).
    pub fn build(self) -> Result<BudgetConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// A number from 0 to 10.
fn check_ratio_up_to_10(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(ConfigError::new(
            field,
            value,
            "must be a number from 0 to 10",
        ));
    }
    if value > 10.0 {
        return Err(ConfigError::new(field, value, "must be at most 10"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
