//! A Redis limiter's shared state and its decision: pre-allotted tokens, the script's
//! answer, or the failure policy.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::Counter;
use tokio::time::Instant;
use tower_prism_core::internal::{lock, nanos};

use tower_prism_core::config::ConfigError;
use tower_prism_core::metrics::ratelimit::{ADMITTED_TOTAL, BACKEND_ERRORS_TOTAL, REJECTED_TOTAL};
use tower_prism_core::metrics::{LABEL_NAME, LABEL_REASON};

use super::client::{connect_target, secrets_of};
use super::config::{FailurePolicy, RedisConfig};
use super::key::{bounded, bucket_key};
use super::link::{CallError, Link, LinkTimings};
use crate::backend::LocalBackend;
use crate::bucket::Quota;
use crate::error::Error;
use crate::rate::RateLimitConfig;

/// GCRA in Lua. KEYS[1]: the bucket. ARGV: interval (µs), burst, weight (the tokens
/// asked: a pre-allotment batch). Takes as many of them as are free, at least one:
/// returns `{granted, 0}`, or `{0, retry_after_us}` (the wait for one token) when none is.
/// A batch larger than what is left takes what is left, so a burst that is not a multiple
/// of the batch is still admitted whole.
///
/// A key holding what the script never writes (no number, NaN, another type than a
/// string, a time further ahead than a full bucket's wait) is read as an empty or a full
/// bucket and overwritten: an error there would fail every call of the key for good.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local weight = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local held = redis.pcall('GET', KEYS[1])
local tat = type(held) == 'string' and tonumber(held) or now
if tat ~= tat or tat < now then tat = now end
if tat > now + burst * interval then tat = now + burst * interval end
local free = math.floor((now + burst * interval - tat) / interval)
if free < 1 then
  return {0, tat + interval - burst * interval - now}
end
local granted = math.min(weight, free)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {granted, 0}
";

pub(super) struct State {
    pub(super) link: Arc<Link>,
    /// The unkeyed bucket's Redis key.
    pub(super) key: String,
    /// A keyed bucket's Redis key is this, the key, and `}`.
    pub(super) prefix: String,
    pub(super) interval_us: u64,
    pub(super) burst: u32,
    pub(super) policy: FailurePolicy,
    pub(super) fallback: Option<LocalBackend>,
    pub(super) hasher: RandomState,
    pub(super) start: Instant,
    pub(super) admitted: Counter,
    pub(super) rejected: Counter,
    pub(super) rejected_backend: Counter,
    pub(super) backend_errors: Counter,
    pub(super) n_admitted: AtomicU64,
    pub(super) n_rejected: AtomicU64,
    pub(super) n_errors: AtomicU64,
    pub(super) name: String,
    /// The config the limiter was built from (its `Debug` redacts the credentials).
    pub(super) config: RedisConfig,
    pub(super) batch: u32,
    pub(super) max_keys: usize,
    /// Pre-allotted tokens left for the unkeyed bucket.
    pub(super) local: AtomicU64,
    /// Pre-allotted tokens left per key (at most `max_keys` keys).
    pub(super) local_keyed: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("key", &self.key)
            .field("interval_us", &self.interval_us)
            .field("burst", &self.burst)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The longest limit name: the metrics label, and part of every Redis key (as a policy
/// name, at most 128 bytes).
const MAX_NAME_BYTES: usize = 128;

impl State {
    /// Validates `cfg` and the URL (without connecting: the connection is made on first
    /// use, so a limiter can start while Redis is down).
    pub(super) fn new(name: String, cfg: RedisConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        // The name sits between the prefix and a key in `{<prefix>:<name>:<key>}`: with a
        // `:` in it, limit `api` keyed `login` and limit `api:login` would share a bucket.
        if name.is_empty() || name.len() > MAX_NAME_BYTES || name.contains([':', '{', '}']) {
            return Err(ConfigError::new(
                "name",
                &name,
                format!(
                    "must be 1 to {MAX_NAME_BYTES} bytes, without `:`, `{{` or `}}` (they shape \
                     the Redis keys)"
                ),
            ));
        }
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
        let labels = [(LABEL_NAME, name.clone())];
        let timings = LinkTimings {
            timeout: cfg.timeout,
            connect_timeout: cfg.connect_timeout,
            backoff: cfg.reconnect_backoff,
            backoff_max: cfg.reconnect_backoff_max,
        };
        Ok(State {
            link: Arc::new(Link::new(
                client,
                timings,
                GCRA,
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
            config: cfg,
            local: Default::default(),
            local_keyed: Default::default(),
        })
    }

    /// Asks Redis for `tokens` of the bucket at `key`: how many it granted (at least one),
    /// or none and the wait for one.
    async fn ask_redis(&self, key: &str, tokens: u32) -> Result<(i64, i64), CallError> {
        let args = [self.interval_us, u64::from(self.burst), u64::from(tokens)];
        self.link.run_script(key, args).await
    }

    /// Spends one pre-allotted token of `key` if one is left (`Ok`), else says how many
    /// tokens to ask Redis for (`Err`): a batch, unless the rest of it could not be kept (a
    /// key beyond `max_keys` with no stock here), when a batch would spend tokens no one
    /// gets, and shrink that key's limit to one request per batch. Both under one lock of
    /// the key map: this runs on every request of a keyed limiter.
    fn take_local(&self, key: Option<&str>) -> Result<(), u32> {
        if self.batch <= 1 {
            return Err(self.batch);
        }
        match key {
            None => self
                .local
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .map(drop)
                .map_err(|_| self.batch),
            Some(key) => {
                let mut map = lock(&self.local_keyed);
                let full = map.len() >= self.max_keys;
                match map.get_mut(key) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        if *n == 0 {
                            map.remove(key);
                        }
                        Ok(())
                    }
                    Some(_) => Err(self.batch),
                    None if full => Err(1),
                    None => Err(self.batch),
                }
            }
        }
    }

    /// Keeps `n` pre-allotted tokens of `key` for later, at most `pre_allot - 1` in all:
    /// requests that found the stock empty at once each took a batch from Redis, and
    /// keeping them all would hold many batches on one instance, past the documented
    /// `instances * (n - 1)`. Tokens over that, and those of a key beyond `max_keys`, are
    /// dropped: that only admits less, never more.
    fn keep_local(&self, key: Option<&str>, n: u64) {
        if n == 0 {
            return;
        }
        let most = u64::from(self.batch.saturating_sub(1));
        match key {
            None => {
                let _ = self.local.fetch_update(Relaxed, Relaxed, |left| {
                    Some(left.saturating_add(n).min(most))
                });
            }
            Some(key) => {
                let mut map = lock(&self.local_keyed);
                if let Some(left) = map.get_mut(key) {
                    *left = left.saturating_add(n).min(most);
                } else if map.len() < self.max_keys {
                    map.insert(key.to_owned(), n.min(most));
                }
            }
        }
    }

    pub(super) async fn decide(&self, key: Option<&str>) -> Result<(), Error> {
        // Long keys are hashed once here: Redis, the maps and the fallback see the short form.
        let key = key.map(bounded);
        let key = key.as_deref();
        let tokens = match self.take_local(key) {
            Ok(()) => {
                self.admit();
                return Ok(());
            }
            Err(tokens) => tokens,
        };
        let answer = match key {
            None => self.ask_redis(&self.key, tokens).await,
            Some(k) => self.ask_redis(&bucket_key(&self.prefix, k), tokens).await,
        };
        match answer {
            Ok((granted, _)) if granted >= 1 => {
                self.keep_local(key, granted.unsigned_abs() - 1);
                self.admit();
                Ok(())
            }
            Ok((_, retry_us)) => Err(self.reject(Duration::from_micros(retry_us.max(0) as u64))),
            Err(e) => {
                self.backend_errors.increment(1);
                self.n_errors.fetch_add(1, Relaxed);
                if !matches!(e, CallError::Down) {
                    tracing::warn!(name = %self.name, error = %e, policy = ?self.policy, "redis rate limiter backend error");
                }
                match self.policy {
                    FailurePolicy::FailOpen => {
                        self.admit();
                        Ok(())
                    }
                    FailurePolicy::FailClosed => {
                        self.rejected_backend.increment(1);
                        Err(self.unavailable(&e))
                    }
                    FailurePolicy::LocalFallback { .. } => {
                        let Some(bucket) = self.fallback.as_ref() else {
                            return Err(self.unavailable(&e));
                        };
                        let now = nanos(self.start.elapsed());
                        let bucket_key = key.map(|k| self.hasher.hash_one(k));
                        match bucket.try_acquire(bucket_key, 1, now) {
                            Ok(_) => {
                                self.admit();
                                Ok(())
                            }
                            Err(d) => Err(self.reject(Duration::from_nanos(d.retry_after_nanos))),
                        }
                    }
                }
            }
        }
    }

    fn admit(&self) {
        self.admitted.increment(1);
        self.n_admitted.fetch_add(1, Relaxed);
    }

    fn unavailable(&self, e: &CallError) -> Error {
        Error::Unavailable(e.to_string())
    }

    fn reject(&self, retry_after: Duration) -> Error {
        // The reply comes from the network: cap it like the local limiter's hint.
        let retry_after = retry_after.min(RateLimitConfig::MAX_RETRY_AFTER);
        self.rejected.increment(1);
        self.n_rejected.fetch_add(1, Relaxed);
        tracing::debug!(name = %self.name, ?retry_after, "rate limited (redis)");
        Error::RateLimited { retry_after }
    }
}
