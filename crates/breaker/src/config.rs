//! [`BreakerConfig`]: serde (TOML-friendly, humantime durations), its builder and its
//! validation.

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
/// `wait_duration`, `max_wait_duration`, `max_wait_in_half_open`): core's
/// [`MAX_DURATION`], 366 days.
pub const MAX_BREAKER_DURATION: Duration = MAX_DURATION;
/// Largest `minimum_calls` and `consecutive_failures`: 2^24, core's bound on any size (a
/// count window also caps `minimum_calls` at its size).
pub const MAX_CALLS: u32 = MAX_SIZE as u32;
/// Largest `backoff_multiplier`: a wait that grows more than a hundredfold per failed probe
/// round reaches `max_wait_duration` at the first reopen anyway.
pub const MAX_BACKOFF_MULTIPLIER: f64 = 100.0;
/// The shortest open wait an upstream's hint sets: 100 ms.
///
/// When the failure that opens the circuit says how long to wait (an HTTP `Retry-After`,
/// or an error's `retry_after`), the circuit stays open that long instead of its computed
/// wait, clamped to at least this (a `Retry-After: 0` cannot turn the open state into a
/// stream of probes) and at most
/// [`effective_max_hinted_wait`](BreakerConfig::effective_max_hinted_wait) (30 s by
/// default).
pub const MIN_HINTED_WAIT: Duration = Duration::from_millis(100);
/// The longest open wait an upstream's hint sets when `max_wait_duration` is not set: 30
/// seconds (the retry stage's default `max_retry_after`), or `wait_duration` when that is
/// longer. A `Retry-After` of a day from a confused upstream does not shut it out for a day.
pub const DEFAULT_MAX_HINTED_WAIT: Duration = Duration::from_secs(30);
/// The cap of the growing open wait when `max_wait_duration` is not set: 1 second, or
/// `wait_duration` when that is longer (a long wait alone is never an error, and a config
/// that sets only `wait_duration` keeps that wait constant).
///
/// The cap bounds how long a recovered upstream stays shut out: with the defaults the
/// open wait is 500 ms, then 1 s while the upstream stays dead, so the first probe after
/// it returns comes at most about 1 s later, and a dead upstream sees only
/// `permitted_calls_in_half_open` calls a second. (An upstream's own `Retry-After` may
/// ask for longer: see [`DEFAULT_MAX_HINTED_WAIT`].)
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);

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

/// A circuit breaker configuration: every setting of the breaker but its name, classifier
/// and health signal (given on the [layer builder](crate::CircuitBreakerLayer::builder)).
///
/// Build one with [`BreakerConfig::builder`] (whose `build` validates), or deserialize it
/// (unknown fields are errors) and [`validate`](Self::validate) it: every error names the
/// field. Layers and breakers refuse an invalid config.
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
/// assert_eq!(config.minimum_calls, 10);
///
/// let err = BreakerConfig::builder().failure_rate_threshold(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "failure_rate_threshold");
///
/// let config: BreakerConfig = toml::from_str(r#"
///     window = { type = "time", duration = "30s", buckets = 6 }
///     wait_duration = "10s"
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.wait_duration, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The sliding window the rates are computed over (default: the last 100 calls).
    pub window: Window,
    /// Calls the window must hold before the rates can trip the breaker (default 20; at
    /// most [`MAX_CALLS`]). A count window smaller than this caps it at its size, as
    /// resilience4j does: [`build`](BreakerConfigBuilder::build) stores the capped value,
    /// and a config read from a file is run with it.
    pub minimum_calls: u32,
    /// Failure rate, in (0, 1], at or above which the breaker opens (default 0.5).
    pub failure_rate_threshold: f64,
    /// Slow-call rate, in (0, 1], at or above which the breaker opens (default 1).
    pub slow_call_rate_threshold: f64,
    /// Calls taking longer than this are slow (default 60 s).
    #[serde(with = "tower_prism_core::config::duration")]
    pub slow_call_duration: Duration,
    /// Failures in a row that open the breaker regardless of the window (default: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// How long the breaker stays open before letting probes through, the first time it
    /// opens (default 500 ms; it grows by `backoff_multiplier` while probes keep failing).
    ///
    /// When the failure that opens the circuit says how long to wait (a `Retry-After` read
    /// by the classifier's [`Classify::retry_after`](tower_prism_core::Classify::retry_after),
    /// or an error hint set with
    /// [`retry_after_hint`](crate::CircuitBreakerLayerBuilder::retry_after_hint)), that
    /// wait is used instead, at least [`MIN_HINTED_WAIT`] and at most
    /// [`effective_max_hinted_wait`](Self::effective_max_hinted_wait).
    #[serde(with = "tower_prism_core::config::duration")]
    pub wait_duration: Duration,
    /// Factor the open wait grows by each time a half-open probe round fails (default 2;
    /// 1 keeps it constant; at most [`MAX_BACKOFF_MULTIPLIER`]). The wait goes back to
    /// `wait_duration` when the breaker closes.
    pub backoff_multiplier: f64,
    /// The longest the circuit stays open at a stretch: cap of the growing open wait and
    /// of a wait an upstream's hint asks for. Default: unset, and then the growing wait
    /// caps at [`DEFAULT_MAX_WAIT`] (1 s) and a hint at [`DEFAULT_MAX_HINTED_WAIT`] (30 s),
    /// each raised to `wait_duration` when that is longer; see
    /// [`effective_max_wait`](Self::effective_max_wait) and
    /// [`effective_max_hinted_wait`](Self::effective_max_hinted_wait).
    #[serde(
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_wait_duration: Option<Duration>,
    /// Probes let through concurrently while half-open; their results close or re-open
    /// the breaker (default 3; at most [`MAX_PROBES`]). Few probes send few calls to an
    /// upstream that is still dead, and close the circuit sooner at low traffic.
    pub permitted_calls_in_half_open: u32,
    /// The longest the breaker stays half-open waiting for its probes to answer
    /// (resilience4j's `maxWaitDurationInHalfOpenState`). Default: unset, and then a
    /// probe that never answers keeps its slot until its caller drops it (a deadline or
    /// timeout above the breaker bounds that); every other call is rejected meanwhile.
    ///
    /// When set, a half-open round that has lasted this long without its probes' verdict
    /// opens the circuit again as a failed round would (the open wait grows by
    /// `backoff_multiplier`), whether its slots are all taken or too little traffic came
    /// to fill them; the late probes' results are then ignored. resilience4j switches on a
    /// timer; here the switch happens at the next call, or the next read of the state or
    /// snapshot.
    #[serde(
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_wait_in_half_open: Option<Duration>,
    /// Whether [`Outcome::Fatal`](tower_prism_core::Outcome::Fatal) calls (a caller's
    /// fault: a bad request, bad credentials) count as failures (default: no). When not,
    /// they are ignored, as resilience4j's `ignoreExceptions`: neither a failure nor a
    /// success in the window, and a half-open probe that ends so gives its slot to the
    /// next call.
    pub count_fatal: bool,
    /// Whether not-retryable failures count as failures (default: yes); when not, they
    /// are ignored as `count_fatal` says.
    pub count_not_retryable: bool,
    /// Whether a call cut short by its deadline counts as a failure (default: no).
    ///
    /// A deadline stage above the breaker (`tower-prism-deadline`) drops the call's
    /// future when the request's deadline passes. By default the breaker then records
    /// nothing: a deadline the caller set too short is not the upstream's fault. When
    /// this is on, a call whose future is dropped after the
    /// [`RequestDeadline`](tower_prism_core::RequestDeadline) it was called under has
    /// passed is recorded as a retryable failure, with the time it ran (so it also counts
    /// towards the slow-call rate). A call dropped before its deadline (a caller that gave
    /// up, a hedge that lost) still records nothing.
    pub count_deadline_expiry: bool,
    /// Where the breaker reads the time: calls' durations, open waits, time windows
    /// (default [`Clock::Auto`]: the CPU's counter, or tokio's clock where it is paused
    /// at the breaker's first call; [`Clock::Tokio`] always follows `tokio::time::pause()`).
    /// A running breaker keeps its clock.
    pub clock: Clock,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Window::default(),
            minimum_calls: 20,
            failure_rate_threshold: 0.5,
            slow_call_rate_threshold: 1.0,
            slow_call_duration: Duration::from_secs(60),
            consecutive_failures: None,
            wait_duration: Duration::from_millis(500),
            backoff_multiplier: 2.0,
            max_wait_duration: None,
            permitted_calls_in_half_open: 3,
            max_wait_in_half_open: None,
            count_fatal: false,
            count_not_retryable: true,
            count_deadline_expiry: false,
            clock: Clock::Auto,
        }
    }
}

impl BreakerConfig {
    /// A builder starting from the defaults: count window of 100 calls, `minimum_calls` 20,
    /// failure rate threshold 0.5, slow calls (over 60 s) tripping only when every call of
    /// the window is one (resilience4j's rate threshold of 100 %), open for 500 ms
    /// doubling while the upstream stays dead (cap 1 s, or `wait_duration` if longer; an
    /// upstream's hint up to 30 s), 3 half-open probes, `Fatal` not counted,
    /// not-retryable counted, a call cut short by its deadline not counted.
    ///
    /// Upper bounds: durations at most [`MAX_BREAKER_DURATION`] (366 days), `window.size`
    /// at most [`MAX_WINDOW_SIZE`], `window.buckets` at most [`MAX_BUCKETS`],
    /// `minimum_calls` and `consecutive_failures` at most [`MAX_CALLS`],
    /// `backoff_multiplier` at most [`MAX_BACKOFF_MULTIPLIER`], probes at most
    /// [`MAX_PROBES`]; beyond them [`build`](BreakerConfigBuilder::build) returns a
    /// [`ConfigError`] naming the field.
    pub fn builder() -> BreakerConfigBuilder {
        BreakerConfigBuilder {
            config: BreakerConfig::default(),
        }
    }

    /// A builder starting from this config, to change a few values.
    pub fn to_builder(&self) -> BreakerConfigBuilder {
        BreakerConfigBuilder {
            config: self.clone(),
        }
    }

    /// The cap of the growing open wait in force: `max_wait_duration` if set, else
    /// [`DEFAULT_MAX_WAIT`] (1 s), or `wait_duration` when that is longer.
    pub fn effective_max_wait(&self) -> Duration {
        self.max_wait_duration
            .unwrap_or(DEFAULT_MAX_WAIT.max(self.wait_duration))
    }

    /// The longest open wait an upstream's hint sets: `max_wait_duration` if set, else
    /// [`DEFAULT_MAX_HINTED_WAIT`] (30 s), or `wait_duration` when that is longer.
    pub fn effective_max_hinted_wait(&self) -> Duration {
        self.max_wait_duration
            .unwrap_or(DEFAULT_MAX_HINTED_WAIT.max(self.wait_duration))
    }

    /// `minimum_calls`, at most a count window's size (more calls than the window holds
    /// could never be reached).
    pub fn effective_minimum_calls(&self) -> u32 {
        match self.window {
            Window::Count { size } => self.minimum_calls.min(size),
            Window::Time { .. } => self.minimum_calls,
        }
    }

    /// Checks every value, or returns an error naming the first bad field
    /// (`window.size`, `failure_rate_threshold`...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_window()?;
        check_nonzero("minimum_calls", self.minimum_calls)?;
        check_size_at_most("minimum_calls", self.minimum_calls, u64::from(MAX_CALLS))?;
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
            check_size_at_most("consecutive_failures", n, u64::from(MAX_CALLS))?;
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
        if let Some(max) = self.max_wait_in_half_open {
            check_duration("max_wait_in_half_open", max)?;
            check_duration_at_most("max_wait_in_half_open", max, MAX_BREAKER_DURATION)?;
        }
        Ok(())
    }

    fn check_window(&self) -> Result<(), ConfigError> {
        match self.window {
            Window::Count { size } => {
                check_nonzero("window.size", size)?;
                check_size_at_most("window.size", size, u64::from(MAX_WINDOW_SIZE))?;
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

/// Builds a [`BreakerConfig`], from [`BreakerConfig::builder`]: one setter per field;
/// [`build`](Self::build) validates.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "call `build()` to get the config"]
pub struct BreakerConfigBuilder {
    config: BreakerConfig,
}

impl BreakerConfigBuilder {
    /// Sets the sliding window.
    pub fn window(mut self, window: Window) -> Self {
        self.config.window = window;
        self
    }
    /// Sets the calls needed in the window before the rates can trip the breaker.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }
    /// Sets the failure rate, in (0, 1], that opens the breaker.
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.config.failure_rate_threshold = rate;
        self
    }
    /// Sets the slow-call rate, in (0, 1], that opens the breaker.
    pub fn slow_call_rate_threshold(mut self, rate: f64) -> Self {
        self.config.slow_call_rate_threshold = rate;
        self
    }
    /// Sets the duration above which a call is slow.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.config.slow_call_duration = duration;
        self
    }
    /// Also opens the breaker after this many failures in a row (`None`: off).
    pub fn consecutive_failures(mut self, failures: impl Into<Option<u32>>) -> Self {
        self.config.consecutive_failures = failures.into();
        self
    }
    /// Sets how long the breaker stays open before probing.
    pub fn wait_duration(mut self, duration: Duration) -> Self {
        self.config.wait_duration = duration;
        self
    }
    /// Sets the factor (1 to [`MAX_BACKOFF_MULTIPLIER`]) the open wait grows by after each
    /// failed probe round.
    pub fn backoff_multiplier(mut self, multiplier: f64) -> Self {
        self.config.backoff_multiplier = multiplier;
        self
    }
    /// Sets the cap of the growing open wait (at least `wait_duration`).
    pub fn max_wait_duration(mut self, max: impl Into<Option<Duration>>) -> Self {
        self.config.max_wait_duration = max.into();
        self
    }
    /// Grows the open wait by `multiplier` after each failed probe round, up to `max`:
    /// [`backoff_multiplier`](Self::backoff_multiplier) and
    /// [`max_wait_duration`](Self::max_wait_duration) in one call.
    pub fn exponential_backoff(self, multiplier: f64, max: Duration) -> Self {
        self.backoff_multiplier(multiplier).max_wait_duration(max)
    }
    /// Sets the number of concurrent half-open probes.
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.config.permitted_calls_in_half_open = calls;
        self
    }
    /// Sets the longest wait for the half-open probes to answer (`None`: no limit).
    pub fn max_wait_in_half_open(mut self, max: impl Into<Option<Duration>>) -> Self {
        self.config.max_wait_in_half_open = max.into();
        self
    }
    /// Whether `Fatal` outcomes count as failures (default: no).
    pub fn count_fatal(mut self, count: bool) -> Self {
        self.config.count_fatal = count;
        self
    }
    /// Whether not-retryable failures count as failures (default: yes).
    pub fn count_not_retryable(mut self, count: bool) -> Self {
        self.config.count_not_retryable = count;
        self
    }
    /// Whether a call cut short by its deadline counts as a failure (default: no; see
    /// [`BreakerConfig::count_deadline_expiry`]).
    pub fn count_deadline_expiry(mut self, count: bool) -> Self {
        self.config.count_deadline_expiry = count;
        self
    }
    /// Where the breaker reads the time (default [`Clock::Auto`]: the CPU's counter, or
    /// tokio's clock where it is paused at the breaker's first call). A running breaker
    /// keeps its clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Checks every value and returns the config, or an error naming the first bad field
    /// (`window.size`, `failure_rate_threshold`...).
    pub fn build(mut self) -> Result<BreakerConfig, ConfigError> {
        self.config.validate()?;
        self.config.minimum_calls = self.config.effective_minimum_calls();
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests;
