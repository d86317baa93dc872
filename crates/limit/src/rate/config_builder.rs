//! [`RateLimitConfigBuilder`]: a [`RateLimitConfig`] in code, one setter per field.

use std::time::Duration;

use tower_prism_core::config::ConfigError;
use tower_prism_core::Clock;

use super::adaptive::AdaptiveConfig;
use super::config::RateLimitConfig;
use super::key_config::KeyConfig;

/// Builds a [`RateLimitConfig`]; [`build`](Self::build) validates it. From
/// [`RateLimitConfig::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_prism_limit::rate::RateLimitConfig;
///
/// let cfg = RateLimitConfig::builder()
///     .rate(100)
///     .period(Duration::from_secs(1))
///     .burst(20)
///     .queue_size(50)
///     .max_wait(Duration::from_millis(250))
///     .build()
///     .unwrap();
/// assert_eq!(cfg.effective_burst(), 20);
/// let err = RateLimitConfig::builder().queue_size(4).build().unwrap_err();
/// assert_eq!(err.field(), "queue_size");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitConfigBuilder {
    config: RateLimitConfig,
}

impl RateLimitConfigBuilder {
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        RateLimitConfigBuilder { config }
    }

    /// Tokens added per [`period`](Self::period) (default 100).
    pub fn rate(mut self, rate: u32) -> Self {
        self.config.rate = rate;
        self
    }

    /// The period the rate is counted over (default one second).
    pub fn period(mut self, period: Duration) -> Self {
        self.config.period = period;
        self
    }

    /// Tokens the bucket holds when full (default: the rate).
    pub fn burst(mut self, burst: u32) -> Self {
        self.config.burst = Some(burst);
        self
    }

    /// Requests that may wait for a token (default 0: none); needs
    /// [`max_wait`](Self::max_wait).
    pub fn queue_size(mut self, size: usize) -> Self {
        self.config.queue_size = size;
        self
    }

    /// The longest a request waits in the queue.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.config.max_wait = Some(max_wait);
        self
    }

    /// Keys a per-key limiter tracks at most (default 10,000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.config.max_keys = max_keys;
        self
    }

    /// Forgets a key once its bucket has been full this long (default one minute).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.config.idle_timeout = idle;
        self
    }

    /// Makes the rate follow a health signal within these bounds; the signal is given to
    /// the layer builder ([`RateLimitLayerBuilder::health`](super::RateLimitLayerBuilder::health)).
    pub fn adaptive(mut self, adaptive: AdaptiveConfig) -> Self {
        self.config.adaptive = Some(adaptive);
        self
    }

    /// Where the buckets read the time (default [`Clock::Auto`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// What keys an HTTP request's bucket (default: nothing, one shared bucket); a
    /// [`KeyPart`](super::KeyPart) or a [`KeyConfig`].
    pub fn key(mut self, key: impl Into<KeyConfig>) -> Self {
        self.config.key = Some(key.into());
        self
    }

    /// Whether admitted HTTP responses carry rate-limit headers (default false).
    pub fn headers(mut self, headers: bool) -> Self {
        self.config.headers = headers;
        self
    }

    /// Validates and returns the config; the error names the first bad field.
    pub fn build(self) -> Result<RateLimitConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
