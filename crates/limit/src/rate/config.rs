//! [`RateLimitConfig`]: the serde-readable, validated description of a limiter.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{
    check_duration, check_duration_at_most, check_nonzero, check_size_at_most, ConfigError,
    MAX_DURATION, MAX_SIZE,
};
use tower_prism_core::Clock;

use super::adaptive::AdaptiveConfig;
use super::config_builder::RateLimitConfigBuilder;
use super::key_config::KeyConfig;
use crate::bucket::Quota;

/// A rate limiter's settings, as read from a config file.
///
/// ```
/// use tower_prism_limit::rate::RateLimitConfig;
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
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Tokens added per `period`. Tokens are spaced a whole number of nanoseconds apart
    /// (rounded up, so never faster than asked); a rate that this would change by more than
    /// 1% (above about 10^7 per second unless it divides the period) is refused.
    pub rate: u32,
    /// The period `rate` is counted over (default one second); at most
    /// [`MAX_PERIOD`](Self::MAX_PERIOD) (366 days).
    #[serde(
        default = "default_period",
        with = "tower_prism_core::config::duration"
    )]
    pub period: Duration,
    /// Tokens the bucket holds when full; defaults to `rate`. Any `u32`, as long as a full
    /// burst refills within [`MAX_REFILL`](Self::MAX_REFILL) (100 years) at the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests that may wait for a token; 0 (the default) rejects at once. At most
    /// [`MAX_QUEUE_SIZE`](Self::MAX_QUEUE_SIZE) (65,536).
    #[serde(default)]
    pub queue_size: usize,
    /// The longest a request waits in the queue; required when `queue_size` > 0, at most
    /// [`MAX_WAIT`](Self::MAX_WAIT) (one minute). A request that could not be admitted
    /// within it (counting the waiters ahead of it) is refused at once with
    /// [`Error::RateLimited`](crate::Error::RateLimited) instead of queued; one that is
    /// queued leaves the queue, admitted or refused, by then (give or take the timer's
    /// millisecond resolution).
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_wait: Option<Duration>,
    /// Keys a per-key limiter tracks at most (default 10,000; at most
    /// [`MAX_KEYS`](Self::MAX_KEYS), 2^24 = 16,777,216). Below it a new key gets a bucket
    /// of its own at once. At it, a key whose bucket is full again and that was not used
    /// since it was last looked at may give its place to a new key (keys seen once go
    /// before keys that come back); a limited key is never forgotten. At the cap a new
    /// key's first request draws from one overflow bucket of a key's shape, shared by all
    /// new keys (a key minted per request gets nothing more); from its second on, the key
    /// has its own bucket. Size it above the clients active within `idle_timeout`.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// A key whose bucket has been full this long is forgotten; at most
    /// [`MAX_IDLE_TIMEOUT`](Self::MAX_IDLE_TIMEOUT) (366 days).
    #[serde(default = "default_idle", with = "tower_prism_core::config::duration")]
    pub idle_timeout: Duration,
    /// Adaptive rate bounds and reactions (the health signal is given in code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveConfig>,
    /// Where the buckets read the time: `"auto"` (the default: the CPU's counter, or
    /// tokio's clock where it is paused at the first admission), `"tokio"` (always follows
    /// paused time) or `"tsc"` (the counter, real time only). See [`Clock`].
    #[serde(default)]
    pub clock: Clock,
    /// What keys an HTTP request's bucket (peer IP, client IP behind trusted proxies, a
    /// header, the route, a path prefix, or a list of them; see [`KeyConfig`]). Read by
    /// [`HttpKey`](super::HttpKey), which the layer's
    /// [`build_http`](super::RateLimitLayerBuilder::build_http) makes;
    /// [`build`](super::RateLimitLayerBuilder::build) refuses a key, since it cannot read
    /// one. Unset: one shared bucket. Cannot change on
    /// [`reconfigure`](super::RateLimiter::reconfigure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyConfig>,
    /// Whether admitted HTTP responses carry rate-limit headers (`RateLimit-Policy`,
    /// `RateLimit`, `X-RateLimit-*`; see [`HttpHeaders`](super::HttpHeaders)); default
    /// false. Rejections carry what a 429 answer needs either way.
    #[serde(default)]
    pub headers: bool,
}

/// The checks a local and a Redis rate limit share: a rate of at least 1 per a period of
/// at most [`MAX_DURATION`], a burst (when set) of at least 1.
/// Refuses `rate` per `period` when tokens spaced `interval` apart (whole `unit`s, rounded
/// up from `period_units / rate`: never closer than asked) would limit to more than 1 %
/// below it.
pub(crate) fn check_spacing(
    rate: u32,
    period: Duration,
    period_units: u128,
    interval: u64,
    unit: &str,
) -> Result<(), ConfigError> {
    let spaced = u128::from(interval) * u128::from(rate);
    // spaced >= period_units; the effective rate is rate * period_units / spaced.
    if (spaced - period_units) * 100 > spaced {
        let effective = u128::from(rate) * period_units / spaced;
        return Err(ConfigError::new(
            "rate",
            rate,
            format!(
                "too fast to represent for a period of {}: tokens are spaced in whole \
                 {unit}, which would limit to {effective} per period (more than 1% off); use \
                 a rate that divides the period in {unit}, or a lower one",
                humantime::format_duration(period)
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_quota(
    rate: u32,
    period: Duration,
    burst: Option<u32>,
) -> Result<(), ConfigError> {
    check_nonzero("rate", rate)?;
    check_duration("period", period)?;
    if let Some(burst) = burst {
        check_nonzero("burst", burst)?;
    }
    check_duration_at_most("period", period, MAX_DURATION)?;
    Ok(())
}

/// 100 per second, burst 100, no queue; the other fields at their documented defaults.
impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig::new(100, default_period())
    }
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
    /// The longest `period` accepted: 366 days (core's
    /// [`MAX_DURATION`](tower_prism_core::config::MAX_DURATION)), a yearly quota.
    pub const MAX_PERIOD: Duration = MAX_DURATION;
    /// The longest a full burst may take to refill at the configured rate (100 years):
    /// bounds `burst` for slow rates, far from where nanosecond arithmetic could overflow.
    pub const MAX_REFILL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    /// The largest `queue_size` accepted (65,536 waiters). A queue is for smoothing short
    /// bursts; a longer one only turns overload into latency.
    pub const MAX_QUEUE_SIZE: usize = 1 << 16;
    /// The longest `max_wait` accepted (one minute): no request waits in the limiter's queue
    /// longer than this, whatever the configuration.
    pub const MAX_WAIT: Duration = Duration::from_secs(60);
    /// The largest `max_keys` accepted (core's [`MAX_SIZE`], 2^24).
    pub const MAX_KEYS: usize = MAX_SIZE as usize;
    /// The longest `idle_timeout` accepted (366 days).
    pub const MAX_IDLE_TIMEOUT: Duration = MAX_DURATION;
    /// The longest `retry_after` a rejection carries (one hour). A slow rate (say one a day)
    /// can leave the bucket empty for longer; the caller is then told to come back in an
    /// hour (and told again, if the bucket is still empty), rather than given a wait that
    /// no client or proxy would honour.
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

    /// A builder, starting from the [defaults](Self::default); set at least
    /// [`rate`](RateLimitConfigBuilder::rate).
    pub fn builder() -> RateLimitConfigBuilder {
        RateLimitConfigBuilder::new(Self::default())
    }

    /// A builder starting from this config.
    pub fn to_builder(&self) -> RateLimitConfigBuilder {
        RateLimitConfigBuilder::new(self.clone())
    }

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
            clock: Clock::Auto,
            key: None,
            headers: false,
        }
    }

    /// The burst in effect (`burst`, or `rate` when unset).
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    /// Checks every field; an error names the field, the bad value and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_quota(self.rate, self.period, self.burst)?;
        self.check_rounding()?;
        if let Some(burst) = self.burst {
            let refill = u128::from(self.quota().interval_nanos) * u128::from(burst);
            if refill > Self::MAX_REFILL.as_nanos() {
                return Err(ConfigError::new(
                    "burst",
                    burst,
                    format!(
                        "at {} per {} a full burst takes more than 100 years to refill",
                        self.rate,
                        humantime::format_duration(self.period)
                    ),
                ));
            }
        }
        check_size_at_most("queue_size", self.queue_size, Self::MAX_QUEUE_SIZE as u64)?;
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
                check_duration_at_most("max_wait", wait, Self::MAX_WAIT)?;
            }
            _ => {}
        }
        check_nonzero("max_keys", self.max_keys)?;
        check_size_at_most("max_keys", self.max_keys, Self::MAX_KEYS as u64)?;
        check_duration("idle_timeout", self.idle_timeout)?;
        check_duration_at_most("idle_timeout", self.idle_timeout, Self::MAX_IDLE_TIMEOUT)?;
        if let Some(key) = &self.key {
            key.validate()?;
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate()?;
            let refill = 1e9 / adaptive.min_rate * f64::from(self.effective_burst());
            if refill > Self::MAX_REFILL.as_nanos() as f64 {
                return Err(ConfigError::new(
                    "adaptive.min_rate",
                    adaptive.min_rate,
                    format!(
                        "too slow for a burst of {}: a full burst would take more than 100 years to refill",
                        self.effective_burst()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Tokens are spaced a whole number of nanoseconds apart, `ceil(period / rate)`, so
    /// the limiter never admits faster than asked. Refuses a rate that rounding would make
    /// more than 1% slower (more than about 10^7 per second, unless the rate divides the
    /// period), rather than silently limit at another rate.
    fn check_rounding(&self) -> Result<(), ConfigError> {
        check_spacing(
            self.rate,
            self.period,
            self.period.as_nanos(),
            self.interval_nanos(),
            "nanoseconds",
        )
    }

    /// `ceil(period / rate)` in nanoseconds (0 for a zero period).
    fn interval_nanos(&self) -> u64 {
        let rate = u128::from(self.rate.max(1));
        u64::try_from(self.period.as_nanos().div_ceil(rate)).unwrap_or(u64::MAX)
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
mod tests;
