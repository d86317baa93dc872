//! [`RedisConfig`]: the serde-readable, validated settings of a Redis rate limiter.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{
    check_duration, check_duration_at_most, check_nonzero, check_size_at_most, ConfigError,
    MAX_SIZE,
};

use super::config_builder::RedisConfigBuilder;
use super::redact::{redact_url, Secrets};
use crate::rate::{check_quota, check_spacing};

/// What to do with a request when Redis cannot be reached in time.
///
/// In a config file: `failure_policy = "fail_open"`, `"fail_closed"`, or
/// `failure_policy = { local_fallback = { instances = 4 } }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Admit it.
    FailOpen,
    /// Reject it with [`Error::Unavailable`](crate::Error::Unavailable).
    #[default]
    FailClosed,
    /// Decide with an in-process bucket (per key, when keyed) of `rate / instances` and
    /// `burst / instances`.
    LocalFallback {
        /// How many instances share the limit (at least 1, at most 2^24).
        instances: u32,
    },
}

/// A Redis rate limiter's settings, as read from a config file. The limit's name (part of
/// the Redis key) is given in code, as for the local limiter.
///
/// ```
/// use tower_prism_limit::redis::{FailurePolicy, RedisConfig};
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
///
/// Credentials: put the password in `password`, or name an environment variable holding it
/// in `password_env` (so it need not sit in the file), rather than in the URL. Wherever a
/// config is shown (`Debug`, errors, logs) the URL's password is replaced by `***` and the
/// `password` field is never printed; it is not serialized either.
///
/// TLS: a `rediss://` URL; the server's certificate is checked against the system's roots,
/// or against the CA certificate (PEM) in `tls_ca_file` for a private CA.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The Redis URL (`redis://host:port/db`, `rediss://` for TLS); with `cluster = true`, a
    /// seed node of the cluster. At most 4096 bytes. Shown with its password redacted.
    pub url: String,
    /// The AUTH user name (Redis 6 ACLs); overrides one in the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The AUTH password; overrides one in the URL. Never printed, never serialized.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// The name of an environment variable holding the AUTH password, read when the layer
    /// is built (e.g. `"REDIS_PASSWORD"`). Exclusive with `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// A PEM file of the CA certificate(s) the server's TLS certificate must chain to,
    /// instead of the system's roots (`rediss://` URLs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Talk to a Redis Cluster (default `false`: one server): the client learns the slot map
    /// from the seed `url`, sends each bucket's script to the node owning its slot and
    /// follows `MOVED`/`ASK` redirections as slots move. Buckets are hash-tagged, so each
    /// lives whole in one slot.
    #[serde(default)]
    pub cluster: bool,
    /// Tokens added per `period`, across all instances: at least 1, at most one per
    /// microsecond of `period` (the script's clock resolution).
    pub rate: u32,
    /// The period `rate` is counted over (default one second, at most 366 days).
    #[serde(
        default = "default_period",
        with = "tower_prism_core::config::duration"
    )]
    pub period: Duration,
    /// Tokens a full bucket holds; defaults to `rate` (capped at 2^24, the most accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Redis key prefix: a limit's bucket is `{<prefix>:<name>}`, a key's
    /// `{<prefix>:<name>:<key>}` (hash tags, so each bucket sits in one Cluster slot). At
    /// most 64 bytes, without `:` (with one, prefix `rl:users` and limit `login` would share
    /// the bucket of prefix `rl`, limit `users`, key `login`), `{` or `}`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Timeout of every Redis call (default 50 ms, at most 30 s). A call never waits longer,
    /// including the first one, which waits for the first connection.
    #[serde(
        default = "default_timeout",
        with = "tower_prism_core::config::duration"
    )]
    pub timeout: Duration,
    /// Timeout of one connection attempt, TLS and AUTH included (default 1 s, at most 60 s).
    /// Attempts run in the background: no call waits for one longer than `timeout`.
    #[serde(
        default = "default_connect_timeout",
        with = "tower_prism_core::config::duration"
    )]
    pub connect_timeout: Duration,
    /// The wait before the second reconnection attempt once Redis is found down (the first
    /// is immediate); each further wait doubles, up to `reconnect_backoff_max` (default
    /// 25 ms, at most 60 s).
    #[serde(
        default = "default_reconnect_backoff",
        with = "tower_prism_core::config::duration"
    )]
    pub reconnect_backoff: Duration,
    /// The longest wait between two reconnection attempts (default 250 ms, at most 60 s):
    /// how late after its return Redis may be noticed, plus one connection.
    #[serde(
        default = "default_reconnect_backoff_max",
        with = "tower_prism_core::config::duration"
    )]
    pub reconnect_backoff_max: Duration,
    /// What happens when Redis fails (default `fail_closed`).
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Tokens taken per round trip and spent locally (default 1: none; at most `burst`); as
    /// many as are left when fewer are, and one at a time for a key beyond `max_keys`
    /// (whose stock could not be kept). Raises the bound to
    /// `d * rate + burst + instances * (pre_allot - 1)` over a window `d`.
    #[serde(default = "default_pre_allot")]
    pub pre_allot: u32,
    /// Keys whose pre-allotted tokens or fallback buckets an instance keeps in memory
    /// (default 10 000, at most 2^24).
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
fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_backoff() -> Duration {
    Duration::from_millis(25)
}
fn default_reconnect_backoff_max() -> Duration {
    Duration::from_millis(250)
}
fn default_pre_allot() -> u32 {
    1
}
fn default_max_keys() -> usize {
    10_000
}

impl RedisConfig {
    /// The longest `timeout` accepted: a rate limit decision that may take longer than this is
    /// no longer a rate limit but an outage.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
    /// The longest `connect_timeout`, `reconnect_backoff` and `reconnect_backoff_max` accepted.
    pub const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(60);
    /// The largest `burst`, `pre_allot` and `max_keys` accepted (core's `MAX_SIZE`, 2^24).
    pub const MAX_COUNT: u32 = MAX_SIZE as u32;
    /// The longest `prefix` accepted, in bytes.
    pub const MAX_PREFIX_BYTES: usize = 64;
    /// The longest `url`, `username`, `password` or `password_env` accepted, in bytes.
    pub const MAX_TEXT_BYTES: usize = 4096;
    /// Keys longer than this (in bytes) are replaced in Redis key names by `~sha1:` and
    /// their SHA-1 in hex.
    pub const MAX_KEY_BYTES: usize = super::key::MAX_KEY_BYTES;

    /// A builder for the Redis at `url` (100 per second, burst 100, fail closed, 50 ms
    /// timeout, no pre-allotment: the [`new`](Self::new) defaults).
    pub fn builder(url: impl Into<String>) -> RedisConfigBuilder {
        RedisConfigBuilder::new(Self::new(url, 100, default_period()))
    }

    /// A builder starting from this config.
    pub fn to_builder(&self) -> RedisConfigBuilder {
        RedisConfigBuilder::new(self.clone())
    }

    /// `rate` per `period` on the Redis at `url`, everything else defaulted.
    pub fn new(url: impl Into<String>, rate: u32, period: Duration) -> Self {
        RedisConfig {
            url: url.into(),
            username: None,
            password: None,
            password_env: None,
            tls_ca_file: None,
            cluster: false,
            rate,
            period,
            burst: None,
            prefix: default_prefix(),
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            reconnect_backoff: default_reconnect_backoff(),
            reconnect_backoff_max: default_reconnect_backoff_max(),
            failure_policy: FailurePolicy::default(),
            pre_allot: default_pre_allot(),
            max_keys: default_max_keys(),
        }
    }

    /// The burst in effect.
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate.min(Self::MAX_COUNT))
    }

    /// Microseconds between two tokens (the script works in Redis `TIME` microseconds),
    /// rounded up: never faster than asked (`validate` refuses a rate this would slow by
    /// more than 1%).
    pub(crate) fn interval_us(&self) -> u64 {
        let rate = u128::from(self.rate.max(1));
        u64::try_from(self.period.as_micros().div_ceil(rate)).unwrap_or(u64::MAX)
    }

    /// The AUTH password in effect: `password`, else the variable `password_env` names
    /// (read now), else none (the URL's own, if any, stays in effect).
    pub(crate) fn resolve_password(&self) -> Result<Option<String>, ConfigError> {
        match (&self.password, &self.password_env) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                "password_env",
                self.password_env.as_deref().unwrap_or_default(),
                "set `password` or `password_env`, not both",
            )),
            // Redis refuses `AUTH ""`, and the link would stay down for good: a missing
            // secret (rendered empty) must be an error now, not an outage later.
            (Some(password), None) if password.is_empty() => Err(ConfigError::new(
                "password",
                "(empty)",
                "must not be empty (leave it unset for no AUTH)",
            )),
            (Some(password), None) => Ok(Some(password.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(password) if password.is_empty() => Err(ConfigError::new(
                    "password_env",
                    var,
                    "names an empty variable (a secret not mounted?): Redis refuses an empty password",
                )),
                Ok(password) => Ok(Some(password)),
                Err(e) => Err(ConfigError::new(
                    "password_env",
                    var,
                    format!("cannot read the password from the environment: {e}"),
                )),
            },
            (None, None) => Ok(None),
        }
    }

    /// What the URL's address must be: a port, a database Redis can select, and for a
    /// Cluster TCP and database 0 (a Cluster has no other).
    fn check_address(&self, info: &::redis::ConnectionInfo) -> Result<(), ConfigError> {
        use ::redis::ConnectionAddr;
        let bad = |why: &'static str| Err(ConfigError::new("url", redact_url(&self.url), why));
        match &info.addr {
            ConnectionAddr::Tcp(_, 0) | ConnectionAddr::TcpTls { port: 0, .. } => {
                return bad("port 0 is not a port to connect to");
            }
            ConnectionAddr::Unix(_) if self.cluster => {
                return bad("a Cluster is reached over TCP: use `redis://` or `rediss://`");
            }
            _ => {}
        }
        let db = info.redis.db;
        if !(0..=i64::from(i32::MAX)).contains(&db) {
            return bad("the database index is out of range");
        }
        if self.cluster && db != 0 {
            return bad("a Cluster has only database 0");
        }
        Ok(())
    }

    /// Checks every field (the URL's syntax too, without connecting; the password variable
    /// and the CA file are read); an error names the field, the bad value and why, with
    /// credentials redacted.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_text("url", &self.url)?;
        let info =
            ::redis::IntoConnectionInfo::into_connection_info(self.url.as_str()).map_err(|e| {
                let why = Secrets::of_url(&self.url).scrub(&e.to_string());
                ConfigError::new(
                    "url",
                    redact_url(&self.url),
                    format!("not a Redis URL: {why}"),
                )
            })?;
        self.check_address(&info)?;
        if let Some(user) = &self.username {
            check_text("username", user)?;
        }
        if let Some(password) = &self.password {
            if password.len() > RedisConfig::MAX_TEXT_BYTES {
                return Err(ConfigError::new(
                    "password",
                    "***",
                    format!("longer than {} bytes", RedisConfig::MAX_TEXT_BYTES),
                ));
            }
        }
        if let Some(var) = &self.password_env {
            check_text("password_env", var)?;
            if var.is_empty() {
                return Err(ConfigError::new(
                    "password_env",
                    "\"\"",
                    "must name a variable",
                ));
            }
        }
        self.resolve_password()?;
        if let Some(path) = &self.tls_ca_file {
            if !matches!(info.addr, ::redis::ConnectionAddr::TcpTls { .. }) {
                return Err(ConfigError::new(
                    "tls_ca_file",
                    path.display(),
                    "needs a `rediss://` url (TLS)",
                ));
            }
            read_ca_file(path)?;
        }
        check_quota(self.rate, self.period, self.burst)?;
        if self.period < Duration::from_micros(1) {
            return Err(ConfigError::new(
                "period",
                humantime::format_duration(self.period),
                "must be at least 1µs (the script counts in microseconds)",
            ));
        }
        // Tokens are spaced in whole microseconds, rounded up: a rate that does not divide
        // the period was rounded down to a shorter spacing (500,001 a second admitted a
        // million), and one it would slow by more than 1% is refused, as the local limiter
        // refuses its own.
        check_spacing(
            self.rate,
            self.period,
            self.period.as_micros(),
            self.interval_us(),
            "microseconds",
        )?;
        if let Some(burst) = self.burst {
            check_size_at_most("burst", burst, u64::from(Self::MAX_COUNT))?;
        }
        // The script keeps a bucket's time as an integer of microseconds: a full burst that
        // takes longer than this to refill overflowed it, and the empty bucket read full.
        let refill = u128::from(self.interval_us()) * u128::from(self.effective_burst());
        if refill > crate::rate::RateLimitConfig::MAX_REFILL.as_micros() {
            return Err(ConfigError::new(
                "burst",
                self.effective_burst(),
                format!(
                    "at {} per {} a full burst takes more than 100 years to refill",
                    self.rate,
                    humantime::format_duration(self.period)
                ),
            ));
        }
        if self.prefix.is_empty()
            || self.prefix.len() > RedisConfig::MAX_PREFIX_BYTES
            || self.prefix.contains(['{', '}', ':'])
        {
            return Err(ConfigError::new(
                "prefix",
                &self.prefix,
                format!(
                    "must be 1 to {} bytes, without `{{` or `}}` (they delimit the Cluster hash \
                     tag) or `:` (it separates the prefix, the name and the key)",
                    RedisConfig::MAX_PREFIX_BYTES
                ),
            ));
        }
        check_duration("timeout", self.timeout)?;
        check_duration_at_most("timeout", self.timeout, RedisConfig::MAX_TIMEOUT)?;
        check_duration("connect_timeout", self.connect_timeout)?;
        check_duration_at_most(
            "connect_timeout",
            self.connect_timeout,
            RedisConfig::MAX_RECONNECT_WAIT,
        )?;
        check_duration("reconnect_backoff", self.reconnect_backoff)?;
        check_duration_at_most(
            "reconnect_backoff",
            self.reconnect_backoff,
            RedisConfig::MAX_RECONNECT_WAIT,
        )?;
        check_duration("reconnect_backoff_max", self.reconnect_backoff_max)?;
        check_duration_at_most(
            "reconnect_backoff_max",
            self.reconnect_backoff_max,
            RedisConfig::MAX_RECONNECT_WAIT,
        )?;
        if self.reconnect_backoff_max < self.reconnect_backoff {
            return Err(ConfigError::new(
                "reconnect_backoff_max",
                humantime::format_duration(self.reconnect_backoff_max),
                format!(
                    "must be at least reconnect_backoff ({})",
                    humantime::format_duration(self.reconnect_backoff)
                ),
            ));
        }
        if let FailurePolicy::LocalFallback { instances } = self.failure_policy {
            let field = "failure_policy.local_fallback.instances";
            check_nonzero(field, instances)?;
            check_size_at_most(field, instances, u64::from(Self::MAX_COUNT))?;
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
        check_size_at_most("max_keys", self.max_keys, u64::from(Self::MAX_COUNT))?;
        Ok(())
    }
}

/// Shows the config with the URL's password replaced by `***` and the `password` field
/// only as set or not.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_env", &self.password_env)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("cluster", &self.cluster)
            .field("rate", &self.rate)
            .field("period", &self.period)
            .field("burst", &self.burst)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_backoff", &self.reconnect_backoff)
            .field("reconnect_backoff_max", &self.reconnect_backoff_max)
            .field("failure_policy", &self.failure_policy)
            .field("pre_allot", &self.pre_allot)
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

/// Checks a text field's length; the error quotes it only redacted and bounded.
fn check_text(field: &'static str, text: &str) -> Result<(), ConfigError> {
    if text.len() > RedisConfig::MAX_TEXT_BYTES {
        return Err(ConfigError::new(
            field,
            redact_url(text),
            format!("longer than {} bytes", RedisConfig::MAX_TEXT_BYTES),
        ));
    }
    Ok(())
}

/// Reads the CA file of `tls_ca_file` (at most 1 MiB), checking it holds PEM.
pub(crate) fn read_ca_file(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    const MAX_CA_FILE_BYTES: u64 = 1 << 20;
    let bad = |reason: String| ConfigError::new("tls_ca_file", path.display(), reason);
    let len = std::fs::metadata(path)
        .map_err(|e| bad(format!("cannot read it: {e}")))?
        .len();
    if len > MAX_CA_FILE_BYTES {
        return Err(bad(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
    }
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(bad("holds no PEM certificate".to_owned()));
    }
    Ok(pem)
}

#[cfg(all(test, not(loom)))]
mod tests;
