//! [`RedisConfigBuilder`]: a [`RedisConfig`] in code, one setter per field.

use std::path::PathBuf;
use std::time::Duration;

use tower_prism_core::config::ConfigError;

use super::config::{FailurePolicy, RedisConfig};

/// Builds a [`RedisConfig`]; [`build`](Self::build) validates it (the URL's syntax too,
/// without connecting). From [`RedisConfig::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_prism_limit::redis::{FailurePolicy, RedisConfig};
///
/// let cfg = RedisConfig::builder("redis://127.0.0.1:6379")
///     .rate(100)
///     .period(Duration::from_secs(1))
///     .burst(20)
///     .failure_policy(FailurePolicy::LocalFallback { instances: 4 })
///     .build()
///     .unwrap();
/// assert_eq!(cfg.effective_burst(), 20);
/// let err = RedisConfig::builder("http://nope").build().unwrap_err();
/// assert_eq!(err.field(), "url");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisConfigBuilder {
    config: RedisConfig,
}

impl RedisConfigBuilder {
    pub(crate) fn new(config: RedisConfig) -> Self {
        RedisConfigBuilder { config }
    }

    /// The Redis URL (`redis://`, `rediss://` for TLS); with [`cluster`](Self::cluster), a
    /// seed node.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// The AUTH user name (Redis ACLs; overrides one in the URL).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.config.username = Some(username.into());
        self
    }

    /// The AUTH password (overrides one in the URL); never shown.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.config.password = Some(password.into());
        self
    }

    /// Reads the AUTH password from the environment variable `var` when validated.
    pub fn password_env(mut self, var: impl Into<String>) -> Self {
        self.config.password_env = Some(var.into());
        self
    }

    /// A PEM file of the CA certificate(s) the server's TLS certificate must chain to
    /// (`rediss://` only), instead of the system's roots.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.tls_ca_file = Some(path.into());
        self
    }

    /// Talks to a Redis Cluster (default `false`), with the URL as a seed node: each
    /// bucket's script goes to the node owning its hash-tagged key's slot, and redirections
    /// are followed.
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.config.cluster = cluster;
        self
    }

    /// Requests admitted per [`period`](Self::period) (default 100).
    pub fn rate(mut self, rate: u32) -> Self {
        self.config.rate = rate;
        self
    }

    /// The period the rate is counted over (default one second).
    pub fn period(mut self, period: Duration) -> Self {
        self.config.period = period;
        self
    }

    /// Requests admitted at once when the bucket is full (default: the rate).
    pub fn burst(mut self, burst: u32) -> Self {
        self.config.burst = Some(burst);
        self
    }

    /// Key prefix (default `prism`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// Timeout of every Redis call (default 50 ms); the first call waits for the first
    /// connection at most this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Timeout of one (background) connection attempt, TLS and AUTH included (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// The wait after the first failed reconnection attempt while Redis is down (default
    /// 25 ms), doubling up to [`reconnect_backoff_max`](Self::reconnect_backoff_max).
    pub fn reconnect_backoff(mut self, first: Duration) -> Self {
        self.config.reconnect_backoff = first;
        self
    }

    /// The longest wait between reconnection attempts (default 250 ms).
    pub fn reconnect_backoff_max(mut self, max: Duration) -> Self {
        self.config.reconnect_backoff_max = max;
        self
    }

    /// What happens when Redis fails (default [`FailurePolicy::FailClosed`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.config.failure_policy = policy;
        self
    }

    /// Takes `n` tokens from Redis per round trip and spends them locally (default 1: no
    /// pre-allotment). Must not exceed the burst. See the [module docs](super) for the
    /// bound.
    pub fn pre_allot(mut self, n: u32) -> Self {
        self.config.pre_allot = n;
        self
    }

    /// Keys an instance keeps pre-allotted tokens and fallback buckets for (default 10 000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.config.max_keys = max_keys;
        self
    }

    /// Validates and returns the config; the error names the first bad field, with
    /// credentials redacted.
    pub fn build(self) -> Result<RedisConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
