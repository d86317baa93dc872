//! [`RedisConfig`]: the serde-readable, validated settings of a Redis rate limiter.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{check_duration, check_nonzero, ConfigError};

/// What to do with a request when Redis cannot be reached in time.
///
/// In a config file: `failure_policy = "fail_open"`, `"fail_closed"`, or
/// `failure_policy = { local_fallback = { instances = 4 } }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FailurePolicy {
    /// Admit it.
    FailOpen,
    /// Reject it with [`RedisError::Unavailable`](super::RedisError::Unavailable).
    #[default]
    FailClosed,
    /// Decide with an in-process bucket (per key, when keyed) of `rate / instances` and
    /// `burst / instances`.
    LocalFallback {
        /// How many instances share the limit (at least 1).
        instances: u32,
    },
}

/// A Redis rate limiter's settings, as read from a config file. The limit's name (part of
/// the Redis key) is given in code, as for the local limiter.
///
/// ```
/// use tower_prism_ratelimit::redis::{FailurePolicy, RedisConfig};
///
/// let cfg: RedisConfig = toml::from_str(r#"
///     url = "redis://127.0.0.1:6379/"
///     rate = 1000
///     period = "1s"
///     burst = 100
///     pre_allot = 8
///     timeout = "20ms"
///     failure_policy = { local_fallback = { instances = 4 } }
/// "#).unwrap();
/// cfg.validate().unwrap();
/// assert_eq!(cfg.failure_policy, FailurePolicy::LocalFallback { instances: 4 });
///
/// let bad: RedisConfig = toml::from_str("url = 'redis://x/'\nrate = 10\npre_allot = 11").unwrap();
/// assert_eq!(bad.validate().unwrap_err().field(), "pre_allot");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// The Redis URL (`redis://host:port/db`, `rediss://` for TLS if the client supports it);
    /// with `cluster = true`, a seed node of the cluster.
    pub url: String,
    /// Talk to a Redis Cluster (default `false`: one server): the client learns the slot map
    /// from the seed `url`, sends each bucket's script to the node owning its slot and
    /// follows `MOVED`/`ASK` redirections as slots move. Buckets are hash-tagged, so each
    /// lives whole in one slot.
    #[serde(default)]
    pub cluster: bool,
    /// Tokens added per `period`, across all instances.
    pub rate: u64,
    /// The period `rate` is counted over (default one second).
    #[serde(
        default = "default_period",
        with = "tower_prism_core::config::duration"
    )]
    pub period: Duration,
    /// Tokens a full bucket holds; defaults to `rate` (capped at `u32::MAX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Redis key prefix: a limit's bucket is `{<prefix>:<name>}`, a key's
    /// `{<prefix>:<name>:<key>}` (hash tags, so each bucket sits in one Cluster slot).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Timeout of every Redis call, connecting included (default 50 ms).
    #[serde(
        default = "default_timeout",
        with = "tower_prism_core::config::duration"
    )]
    pub timeout: Duration,
    /// What happens when Redis fails (default `fail_closed`).
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Tokens taken per round trip and spent locally (default 1: none). Raises the bound to
    /// `d * rate + burst + instances * (pre_allot - 1)` over a window `d`.
    #[serde(default = "default_pre_allot")]
    pub pre_allot: u32,
    /// Keys whose pre-allotted tokens or fallback buckets an instance keeps in memory.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_period() -> Duration {
    Duration::from_secs(1)
}
fn default_prefix() -> String {
    "prism".to_owned()
}
fn default_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_pre_allot() -> u32 {
    1
}
fn default_max_keys() -> usize {
    10_000
}

impl RedisConfig {
    /// `rate` per `period` on the Redis at `url`, everything else defaulted.
    pub fn new(url: impl Into<String>, rate: u64, period: Duration) -> Self {
        RedisConfig {
            url: url.into(),
            cluster: false,
            rate,
            period,
            burst: None,
            prefix: default_prefix(),
            timeout: default_timeout(),
            failure_policy: FailurePolicy::default(),
            pre_allot: default_pre_allot(),
            max_keys: default_max_keys(),
        }
    }

    /// The burst in effect.
    pub fn effective_burst(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| u32::try_from(self.rate).unwrap_or(u32::MAX))
    }

    /// Microseconds between two tokens (the script works in Redis `TIME` microseconds).
    pub(crate) fn interval_us(&self) -> u64 {
        u64::try_from(self.period.as_micros() / u128::from(self.rate.max(1))).unwrap_or(u64::MAX)
    }

    /// Checks every field (the URL's syntax too, without connecting); an error names the
    /// field, the bad value and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ::redis::Client::open(self.url.as_str())
            .map_err(|e| ConfigError::new("url", &self.url, format!("not a Redis URL: {e}")))?;
        check_nonzero("rate", self.rate)?;
        check_duration("period", self.period)?;
        if self.period > Duration::from_secs(100 * 365 * 86_400) {
            return Err(ConfigError::new(
                "period",
                humantime::format_duration(self.period),
                "must be at most 100 years",
            ));
        }
        if self.interval_us() == 0 {
            return Err(ConfigError::new(
                "rate",
                self.rate,
                format!(
                    "too high: at most one token per microsecond of the period ({})",
                    humantime::format_duration(self.period)
                ),
            ));
        }
        if let Some(burst) = self.burst {
            check_nonzero("burst", burst)?;
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "prefix",
                &self.prefix,
                "must be non-empty, without `{` or `}` (they delimit the Cluster hash tag)",
            ));
        }
        check_duration("timeout", self.timeout)?;
        if let FailurePolicy::LocalFallback { instances: 0 } = self.failure_policy {
            return Err(ConfigError::new(
                "failure_policy.local_fallback.instances",
                0,
                "must be at least 1",
            ));
        }
        let burst = self.effective_burst();
        if self.pre_allot == 0 || self.pre_allot > burst {
            return Err(ConfigError::new(
                "pre_allot",
                self.pre_allot,
                format!("must be in 1..=burst ({burst})"),
            ));
        }
        check_nonzero("max_keys", self.max_keys)?;
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn field(cfg: RedisConfig) -> String {
        cfg.validate().unwrap_err().field().to_owned()
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = RedisConfig::new("redis://127.0.0.1:6379/", 100, Duration::from_secs(1));
        ok.validate().unwrap();
        let with = |f: fn(&mut RedisConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c
        };
        assert_eq!(field(with(|c| c.url = "http://nope".into())), "url");
        assert_eq!(field(with(|c| c.rate = 0)), "rate");
        assert_eq!(field(with(|c| c.rate = 2_000_000)), "rate");
        assert_eq!(field(with(|c| c.period = Duration::ZERO)), "period");
        assert_eq!(field(with(|c| c.period = Duration::MAX)), "period");
        assert_eq!(field(with(|c| c.burst = Some(0))), "burst");
        assert_eq!(field(with(|c| c.prefix = "a{b".into())), "prefix");
        assert_eq!(field(with(|c| c.timeout = Duration::ZERO)), "timeout");
        assert_eq!(
            field(with(
                |c| c.failure_policy = FailurePolicy::LocalFallback { instances: 0 }
            )),
            "failure_policy.local_fallback.instances"
        );
        assert_eq!(field(with(|c| c.pre_allot = 0)), "pre_allot");
        assert_eq!(field(with(|c| c.max_keys = 0)), "max_keys");
    }

    #[test]
    fn serde_reads_policies_and_refuses_unknown_fields() {
        let cfg: RedisConfig = toml::from_str(
            "url = 'redis://h/'\nrate = 5\nfailure_policy = 'fail_open'\ntimeout = '10ms'",
        )
        .unwrap();
        assert_eq!(cfg.failure_policy, FailurePolicy::FailOpen);
        assert_eq!(cfg.timeout, Duration::from_millis(10));
        assert_eq!(cfg.effective_burst(), 5);
        assert!(toml::from_str::<RedisConfig>("url = 'redis://h/'\nrate = 5\nrates = 1").is_err());
        assert!(toml::from_str::<RedisConfig>(
            "url = 'redis://h/'\nrate = 5\nfailure_policy = 'maybe'"
        )
        .is_err());
    }
}
