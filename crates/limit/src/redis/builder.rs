//! [`RedisRateLimitBuilder`]: settings in code, then validated into a layer.

use std::collections::hash_map::RandomState;
use std::sync::Arc;
use std::time::Duration;

use ::redis::Script;
use tokio::time::Instant;
use tower_prism_core::metrics::ratelimit::{ADMITTED_TOTAL, BACKEND_ERRORS_TOTAL, REJECTED_TOTAL};
use tower_prism_core::metrics::{LABEL_NAME, LABEL_REASON};

use super::client::{connect_target, secrets_of};
use super::link::{Link, LinkTimings};
use super::state::{State, GCRA};
use super::{FailurePolicy, RedisConfig, RedisError, RedisRateLimitLayer};
use crate::backend::LocalBackend;
use crate::bucket::Quota;
use crate::policy::Unkeyed;

/// Builder of a [`RedisRateLimitLayer`]; see [`RedisRateLimitLayer::builder`].
#[derive(Debug, Clone)]
pub struct RedisRateLimitBuilder {
    config: RedisConfig,
    name: String,
}

impl RedisRateLimitBuilder {
    /// Starts from a config (e.g. read from a file) for the limit `name`.
    pub fn from_config(name: impl Into<String>, config: RedisConfig) -> Self {
        RedisRateLimitBuilder {
            config,
            name: name.into(),
        }
    }
    /// Takes `n` tokens from Redis per round trip and spends them locally (default 1: no
    /// pre-allotment). Must not exceed the burst. See the module docs for the bound.
    pub fn pre_allot(mut self, n: u32) -> Self {
        self.config.pre_allot = n;
        self
    }
    /// `rate` requests per `per` (default 100 per second).
    pub fn rate(mut self, rate: u64, per: Duration) -> Self {
        self.config.rate = rate;
        self.config.period = per;
        self
    }
    /// Requests admitted at once when the bucket is full (default: `rate`).
    pub fn burst(mut self, burst: u32) -> Self {
        self.config.burst = Some(burst);
        self
    }
    /// Talks to a Redis Cluster, with the URL as a seed node: each bucket's script goes to
    /// the node owning its hash-tagged key's slot, and redirections are followed.
    pub fn cluster(mut self) -> Self {
        self.config.cluster = true;
        self
    }
    /// Key prefix (default `prism`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }
    /// Timeout of every Redis call (default 50 ms, at most 30 s); the first call waits for
    /// the first connection at most this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }
    /// Timeout of one (background) connection attempt, TLS and AUTH included (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }
    /// Waits between reconnection attempts while Redis is down: `first` after the first
    /// failed attempt, doubling up to `max` (default 25 ms to 250 ms; each at most 60 s).
    pub fn reconnect_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.config.reconnect_backoff = first;
        self.config.reconnect_backoff_max = max;
        self
    }
    /// The AUTH password (overrides one in the URL); never shown.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.config.password = Some(password.into());
        self
    }
    /// Reads the AUTH password from the environment variable `var` when built.
    pub fn password_env(mut self, var: impl Into<String>) -> Self {
        self.config.password_env = Some(var.into());
        self
    }
    /// The AUTH user name (Redis ACLs; overrides one in the URL).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.config.username = Some(username.into());
        self
    }
    /// A PEM file of the CA certificate(s) the server's TLS certificate must chain to
    /// (`rediss://` only), instead of the system's roots.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.tls_ca_file = Some(path.into());
        self
    }
    /// What happens when Redis fails (default [`FailurePolicy::FailClosed`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.config.failure_policy = policy;
        self
    }
    /// Keys an instance keeps pre-allotted tokens and fallback buckets for (default 10 000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.config.max_keys = max_keys;
        self
    }

    /// Validates the configuration and the URL (without connecting: the connection is made
    /// on first use, so a limiter can start while Redis is down).
    pub fn build(self) -> Result<RedisRateLimitLayer, RedisError> {
        let cfg = self.config;
        cfg.validate()?;
        let client = connect_target(&cfg)?;
        let interval_us = cfg.interval_us();
        let burst = cfg.effective_burst();
        let fallback = match cfg.failure_policy {
            FailurePolicy::LocalFallback { instances } => Some(LocalBackend::new(
                Quota {
                    interval_nanos: interval_us.saturating_mul(1000 * u64::from(instances)),
                    burst: (burst / instances).max(1),
                },
                cfg.max_keys,
                // A fallback bucket full again for a minute is forgotten.
                60_000_000_000,
            )),
            _ => None,
        };
        let name = self.name;
        let labels = [(LABEL_NAME, name.clone())];
        let timings = LinkTimings {
            timeout: cfg.timeout,
            connect_timeout: cfg.connect_timeout,
            backoff: cfg.reconnect_backoff,
            backoff_max: cfg.reconnect_backoff_max,
        };
        let state = State {
            link: Arc::new(Link::new(
                client,
                timings,
                Script::new(GCRA),
                secrets_of(&cfg),
                name.clone(),
            )),
            key: format!("{{{}:{}}}", cfg.prefix, name),
            prefix: format!("{{{}:{}:", cfg.prefix, name),
            interval_us,
            burst,
            policy: cfg.failure_policy,
            fallback,
            hasher: RandomState::new(),
            start: Instant::now(),
            admitted: metrics::counter!(ADMITTED_TOTAL, &labels),
            rejected: metrics::counter!(REJECTED_TOTAL, LABEL_NAME => name.clone(), LABEL_REASON => "rate"),
            rejected_backend: metrics::counter!(REJECTED_TOTAL, LABEL_NAME => name.clone(), LABEL_REASON => "backend"),
            backend_errors: metrics::counter!(BACKEND_ERRORS_TOTAL, &labels),
            n_admitted: Default::default(),
            n_rejected: Default::default(),
            n_errors: Default::default(),
            name,
            batch: cfg.pre_allot,
            max_keys: cfg.max_keys,
            local: Default::default(),
            local_keyed: Default::default(),
        };
        Ok(RedisRateLimitLayer {
            state: Arc::new(state),
            key: Unkeyed,
        })
    }
}
