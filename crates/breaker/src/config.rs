//! Breaker configuration: serde (TOML-friendly, humantime durations) and a builder.
//!
//! A [`BreakerConfig`] is always valid: the only ways to get one are
//! [`BreakerConfigBuilder::build`] and deserialization, and both validate.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{
    check_duration, check_duration_at_most, check_nonzero, check_positive, check_ratio,
    check_size_at_most, MAX_DURATION, MAX_SIZE,
};
use tower_prism_core::{Clock, ConfigError};

/// Largest count window (`window.size`, 2^20 calls: one 4-byte slot each).
pub const MAX_WINDOW_SIZE: u32 = 1 << 20;
/// Largest number of concurrent half-open probes (`permitted_calls_in_half_open`).
pub const MAX_PROBES: u32 = 1000;
/// Largest number of buckets in a time window (`window.buckets`).
pub const MAX_BUCKETS: u32 = 1000;
/// Longest duration of any breaker setting (`window.duration`, `slow_call_duration`,
/// `wait_duration`, `max_wait_duration`): core's [`MAX_DURATION`], 366 days.
pub const MAX_BREAKER_DURATION: Duration = MAX_DURATION;
/// Largest `minimum_calls` and `consecutive_failures`: core's [`MAX_SIZE`], 2^24 (a count
/// window also caps `minimum_calls` at its size).
pub const MAX_CALLS: u64 = MAX_SIZE;
/// Largest `backoff_multiplier`: a wait that grows more than a hundredfold per failed probe
/// round reaches `max_wait_duration` at the first reopen anyway.
pub const MAX_BACKOFF_MULTIPLIER: f64 = 100.0;
/// The cap of the growing open wait when `max_wait_duration` is not set: 5 minutes, or
/// `wait_duration` when that is longer (a long wait alone is never an error).
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);

/// The sliding window the failure and slow-call rates are computed over.
///
/// In TOML: `window = { type = "count", size = 100 }` or
/// `window = { type = "time", duration = "60s", buckets = 10 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Window {
    /// The last `size` calls.
    Count {
        /// Number of calls in the window.
        size: u32,
    },
    /// The calls of the last `duration`, counted in `buckets` slices of `duration / buckets`.
    Time {
        /// Length of the window.
        #[serde(with = "tower_prism_core::config::duration")]
        duration: Duration,
        /// Number of slices the window is kept in; it slides by one slice at a time.
        buckets: u32,
    },
}

impl Default for Window {
    fn default() -> Self {
        Window::Count { size: 100 }
    }
}

/// A validated circuit breaker configuration. Build one with [`BreakerConfig::builder`] or
/// deserialize it (unknown fields and bad values are errors naming the field).
///
/// ```
/// use std::time::Duration;
/// use tower_prism_breaker::{BreakerConfig, Window};
///
/// let config = BreakerConfig::builder()
///     .window(Window::Count { size: 50 })
///     .minimum_calls(10)
///     .failure_rate_threshold(0.5)
///     .wait_duration(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// assert_eq!(config.minimum_calls(), 10);
///
/// let err = BreakerConfig::builder().failure_rate_threshold(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "failure_rate_threshold");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BreakerConfigBuilder", into = "BreakerConfigBuilder")]
pub struct BreakerConfig {
    raw: BreakerConfigBuilder,
}

/// Builder (and serde form) of a [`BreakerConfig`]; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfigBuilder {
    window: Window,
    minimum_calls: u32,
    failure_rate_threshold: f64,
    slow_call_rate_threshold: f64,
    #[serde(with = "tower_prism_core::config::duration")]
    slow_call_duration: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    consecutive_failures: Option<u32>,
    #[serde(with = "tower_prism_core::config::duration")]
    wait_duration: Duration,
    backoff_multiplier: f64,
    #[serde(
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    max_wait_duration: Option<Duration>,
    permitted_calls_in_half_open: u32,
    count_fatal: bool,
    count_not_retryable: bool,
    clock: Clock,
}

impl Default for BreakerConfigBuilder {
    fn default() -> Self {
        BreakerConfigBuilder {
            window: Window::default(),
            minimum_calls: 20,
            failure_rate_threshold: 0.5,
            slow_call_rate_threshold: 1.0,
            slow_call_duration: Duration::from_secs(60),
            consecutive_failures: None,
            wait_duration: Duration::from_secs(30),
            backoff_multiplier: 1.0,
            max_wait_duration: None,
            permitted_calls_in_half_open: 10,
            count_fatal: false,
            count_not_retryable: true,
            clock: Clock::Tokio,
        }
    }
}

impl TryFrom<BreakerConfigBuilder> for BreakerConfig {
    type Error = ConfigError;

    fn try_from(raw: BreakerConfigBuilder) -> Result<Self, ConfigError> {
        raw.build()
    }
}

impl From<BreakerConfig> for BreakerConfigBuilder {
    fn from(config: BreakerConfig) -> Self {
        config.raw
    }
}

impl BreakerConfig {
    /// A builder starting from the defaults: count window of 100 calls, `minimum_calls` 20,
    /// failure rate threshold 0.5, slow calls (over 60 s) not tripping, open for 30 s (no
    /// growth, cap 5 min or `wait_duration` if longer), 10 half-open probes, `Fatal` not
    /// counted, not-retryable counted.
    ///
    /// Upper bounds: durations at most [`MAX_BREAKER_DURATION`] (366 days), `window.size`
    /// at most [`MAX_WINDOW_SIZE`], `window.buckets` at most [`MAX_BUCKETS`],
    /// `minimum_calls` and `consecutive_failures` at most [`MAX_CALLS`],
    /// `backoff_multiplier` at most [`MAX_BACKOFF_MULTIPLIER`], probes at most
    /// [`MAX_PROBES`]; beyond them [`build`](BreakerConfigBuilder::build) returns a
    /// [`ConfigError`] naming the field.
    pub fn builder() -> BreakerConfigBuilder {
        BreakerConfigBuilder::default()
    }

    /// Checks every value again, naming the first bad field. A `BreakerConfig` is valid
    /// by construction (built or deserialized, both validate), so this returns `Ok`; it is
    /// here so every tower-prism config can be checked the same way.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.raw.clone().build().map(drop)
    }

    /// A builder starting from this config, to change a few values.
    pub fn to_builder(&self) -> BreakerConfigBuilder {
        self.raw.clone()
    }

    /// The sliding window.
    pub fn window(&self) -> Window {
        self.raw.window
    }
    /// Calls the window must hold before the rates can trip the breaker.
    pub fn minimum_calls(&self) -> u32 {
        self.raw.minimum_calls
    }
    /// Failure rate (0 to 1] at or above which the breaker opens.
    pub fn failure_rate_threshold(&self) -> f64 {
        self.raw.failure_rate_threshold
    }
    /// Slow-call rate (0 to 1] at or above which the breaker opens.
    pub fn slow_call_rate_threshold(&self) -> f64 {
        self.raw.slow_call_rate_threshold
    }
    /// Calls taking longer than this are slow.
    pub fn slow_call_duration(&self) -> Duration {
        self.raw.slow_call_duration
    }
    /// Failures in a row that open the breaker regardless of the window, if set.
    pub fn consecutive_failures(&self) -> Option<u32> {
        self.raw.consecutive_failures
    }
    /// How long the breaker stays open before letting probes through.
    pub fn wait_duration(&self) -> Duration {
        self.raw.wait_duration
    }
    /// Factor the open wait grows by each time a half-open probe round fails (1 = no growth).
    pub fn backoff_multiplier(&self) -> f64 {
        self.raw.backoff_multiplier
    }
    /// Cap of the growing open wait: the one set, or [`DEFAULT_MAX_WAIT`] (5 minutes), or
    /// `wait_duration` when that is longer.
    pub fn max_wait_duration(&self) -> Duration {
        self.raw.effective_max_wait()
    }
    /// Probes let through concurrently while half-open; their results close or re-open.
    pub fn permitted_calls_in_half_open(&self) -> u32 {
        self.raw.permitted_calls_in_half_open
    }
    /// Whether [`Outcome::Fatal`](tower_prism_core::Outcome::Fatal) calls count as failures.
    pub fn count_fatal(&self) -> bool {
        self.raw.count_fatal
    }
    /// Whether not-retryable failures count as failures.
    pub fn count_not_retryable(&self) -> bool {
        self.raw.count_not_retryable
    }
    /// Where the breaker reads the time (calls' durations, open waits, time windows).
    pub fn clock(&self) -> Clock {
        self.raw.clock
    }
}

impl BreakerConfigBuilder {
    /// Sets the sliding window.
    pub fn window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }
    /// Sets the calls needed in the window before the rates can trip the breaker.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = calls;
        self
    }
    /// Sets the failure rate, in (0, 1], that opens the breaker.
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.failure_rate_threshold = rate;
        self
    }
    /// Sets the slow-call rate, in (0, 1], that opens the breaker.
    pub fn slow_call_rate_threshold(mut self, rate: f64) -> Self {
        self.slow_call_rate_threshold = rate;
        self
    }
    /// Sets the duration above which a call is slow.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.slow_call_duration = duration;
        self
    }
    /// Also opens the breaker after this many failures in a row (`None`: off).
    pub fn consecutive_failures(mut self, failures: impl Into<Option<u32>>) -> Self {
        self.consecutive_failures = failures.into();
        self
    }
    /// Sets how long the breaker stays open before probing.
    pub fn wait_duration(mut self, duration: Duration) -> Self {
        self.wait_duration = duration;
        self
    }
    /// Grows the open wait by `multiplier` (1 to [`MAX_BACKOFF_MULTIPLIER`]) after each
    /// failed probe round, up to `max` (at least `wait_duration`).
    pub fn exponential_backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.backoff_multiplier = multiplier;
        self.max_wait_duration = Some(max);
        self
    }

    fn effective_max_wait(&self) -> Duration {
        self.max_wait_duration
            .unwrap_or(DEFAULT_MAX_WAIT.max(self.wait_duration))
    }
    /// Sets the number of concurrent half-open probes.
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.permitted_calls_in_half_open = calls;
        self
    }
    /// Whether `Fatal` outcomes count as failures (default: no).
    pub fn count_fatal(mut self, count: bool) -> Self {
        self.count_fatal = count;
        self
    }
    /// Where the breaker reads the time (default [`Clock::Tokio`], which follows
    /// `tokio::time::pause()`; [`Clock::Tsc`] reads the CPU's counter, faster, real time only).
    /// A running breaker keeps its clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
    /// Whether not-retryable failures count as failures (default: yes).
    pub fn count_not_retryable(mut self, count: bool) -> Self {
        self.count_not_retryable = count;
        self
    }

    /// Checks every value and returns the config, or an error naming the first bad field
    /// (`window.size`, `failure_rate_threshold`...).
    pub fn build(self) -> Result<BreakerConfig, ConfigError> {
        self.check_window()?;
        check_nonzero("minimum_calls", self.minimum_calls)?;
        check_size_at_most("minimum_calls", self.minimum_calls, MAX_CALLS)?;
        check_ratio("failure_rate_threshold", self.failure_rate_threshold)?;
        check_ratio("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        check_duration("slow_call_duration", self.slow_call_duration)?;
        check_duration_at_most(
            "slow_call_duration",
            self.slow_call_duration,
            MAX_BREAKER_DURATION,
        )?;
        if let Some(n) = self.consecutive_failures {
            check_nonzero("consecutive_failures", n)?;
            check_size_at_most("consecutive_failures", n, MAX_CALLS)?;
        }
        check_duration("wait_duration", self.wait_duration)?;
        check_duration_at_most("wait_duration", self.wait_duration, MAX_BREAKER_DURATION)?;
        self.check_backoff()?;
        check_nonzero(
            "permitted_calls_in_half_open",
            self.permitted_calls_in_half_open,
        )?;
        check_size_at_most(
            "permitted_calls_in_half_open",
            self.permitted_calls_in_half_open,
            u64::from(MAX_PROBES),
        )?;
        Ok(BreakerConfig { raw: self })
    }

    fn check_window(&self) -> Result<(), ConfigError> {
        match self.window {
            Window::Count { size } => {
                check_nonzero("window.size", size)?;
                check_size_at_most("window.size", size, u64::from(MAX_WINDOW_SIZE))?;
                if self.minimum_calls > size {
                    return Err(ConfigError::new(
                        "minimum_calls",
                        self.minimum_calls,
                        format!(
                            "must be at most the window size ({size}), or the breaker never trips"
                        ),
                    ));
                }
            }
            Window::Time { duration, buckets } => {
                check_duration("window.duration", duration)?;
                check_duration_at_most("window.duration", duration, MAX_BREAKER_DURATION)?;
                check_nonzero("window.buckets", buckets)?;
                check_size_at_most("window.buckets", buckets, u64::from(MAX_BUCKETS))?;
                if duration.as_nanos() / u128::from(buckets) == 0 {
                    return Err(ConfigError::new(
                        "window.duration",
                        humantime::format_duration(duration),
                        "is shorter than one nanosecond per bucket",
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_backoff(&self) -> Result<(), ConfigError> {
        check_positive("backoff_multiplier", self.backoff_multiplier)?;
        if !(1.0..=MAX_BACKOFF_MULTIPLIER).contains(&self.backoff_multiplier) {
            return Err(ConfigError::new(
                "backoff_multiplier",
                self.backoff_multiplier,
                format!("must be at least 1 (1 keeps the wait constant) and at most {MAX_BACKOFF_MULTIPLIER}"),
            ));
        }
        if let Some(max) = self.max_wait_duration {
            check_duration_at_most("max_wait_duration", max, MAX_BREAKER_DURATION)?;
            if max < self.wait_duration {
                return Err(ConfigError::new(
                    "max_wait_duration",
                    humantime::format_duration(max),
                    format!(
                        "must be at least wait_duration ({})",
                        humantime::format_duration(self.wait_duration)
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
