//! Distributed rate limiting on Redis (feature `redis`).
//!
//! Every decision is one round trip: a GCRA step in a Lua script (`EVALSHA`, loaded again on
//! `NOSCRIPT`) that reads the clock with `redis.call('TIME')`, so the instances' clocks do
//! not matter, and stores the bucket's theoretical arrival time under a hash-tagged key
//! `{<prefix>:<name>}` with a `PX` expiry so memory stays bounded. All instances that use
//! the same Redis, prefix and name share one limit: over any window `d`, at most
//! `d * rate + burst` requests are admitted in total.
//!
//! Every Redis call has a timeout. When Redis fails, the [`FailurePolicy`] decides:
//! admit ([`FailurePolicy::FailOpen`]), reject with [`RedisError::Unavailable`]
//! ([`FailurePolicy::FailClosed`]) or use an in-process bucket sized `rate / instances`
//! ([`FailurePolicy::LocalFallback`]). A call that times out or finds the connection
//! broken turns the connection [`LinkState::Down`]: from then on calls take the failure
//! policy at once, without waiting, while one background task reconnects (at once, then
//! with a backoff doubling from `reconnect_backoff` to `reconnect_backoff_max`, 25 ms to
//! 250 ms by default, each attempt bounded by `connect_timeout`). Decisions come from Redis
//! again within `reconnect_backoff_max` plus one connection of its return. A server that
//! accepts connections but does not answer (packets dropped, or slower than `timeout`) costs
//! one timeout, then fails fast the same way.
//!
//! TLS (`rediss://`, rustls: no OpenSSL) and AUTH are supported; the password can come from
//! the `password` setting or an environment variable (`password_env`) instead of the URL,
//! and is never shown: URLs in `Debug`, errors and logs have it replaced by `***`.
//!
//! Keys longer than [`MAX_KEY_BYTES`] are replaced in Redis key names by their SHA-1, so
//! no key makes a Redis key (or an instance's map entry) longer than 46 bytes plus the prefix.
//!
//! With [`RedisRateLimitLayer::key_fn`], each key of the request (an API key, a client
//! address) has its own bucket, the Redis key `{<prefix>:<name>:<key>}`; the hash tag
//! spans the whole key, so keys spread over the slots of a Redis Cluster
//! ([`RedisRateLimitBuilder::cluster`], `cluster = true`: the URL is then a seed node, and
//! each script runs on the node owning its key, redirections followed). Memory stays
//! bounded on both sides: every Redis key expires once its bucket is full again, and an
//! instance keeps pre-allotted tokens and fallback buckets for at most `max_keys` keys.
//!
//! With [`RedisRateLimitBuilder::pre_allot`]`(n)`, an instance takes `n` tokens per round
//! trip and hands them out locally (no round trip) before asking again. Tokens are still
//! counted in Redis when taken, so the bound becomes
//! `d * rate + burst + instances * (n - 1)` over a window `d` (per key): an instance may
//! spend inside the window up to `n - 1` tokens it took before it.
//!
//! Settings can come from a file as a [`RedisConfig`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt, service_fn};
//! use tower_prism_ratelimit::redis::{FailurePolicy, RedisRateLimitLayer};
//!
//! # async fn run() -> Result<(), tower::BoxError> {
//! struct Req { api_key: String }
//! let layer = RedisRateLimitLayer::builder("redis://127.0.0.1:6379", "api")
//!     .rate(100, Duration::from_secs(1))
//!     .burst(20)
//!     .failure_policy(FailurePolicy::LocalFallback { instances: 4 })
//!     .build()?
//!     .key_fn(|req: &Req| req.api_key.clone());
//! let svc = layer.layer(service_fn(|req: Req| async move { Ok::<_, tower::BoxError>(req.api_key) }));
//! let _ = svc.oneshot(Req { api_key: "k1".into() }).await;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod key;
mod link;
mod redact;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use ::redis::cluster::ClusterClientBuilder;
use ::redis::{Client, ConnectionInfo, IntoConnectionInfo, Script, TlsCertificates};
use metrics::Counter;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_prism_core::config::ConfigError;
use tower_prism_core::metrics::ratelimit::{ADMITTED_TOTAL, BACKEND_ERRORS_TOTAL, REJECTED_TOTAL};
use tower_prism_core::metrics::{LABEL_NAME, LABEL_REASON};
use tower_service::Service;

pub use config::{
    FailurePolicy, RedisConfig, MAX_COUNT, MAX_PREFIX_BYTES, MAX_RECONNECT_WAIT, MAX_TEXT_BYTES,
    MAX_TIMEOUT,
};
pub use error::RedisError;
pub use key::MAX_KEY_BYTES;
pub use link::LinkState;

use key::{bounded, bucket_key};
use link::{CallError, Link, LinkTimings, Target};
use redact::{redact_url, Secrets};

use crate::backend::{Backend, LocalBackend};
use crate::bucket::Quota;
use crate::policy::Unkeyed;
use crate::{BoxError, Error};

/// GCRA in Lua. KEYS[1]: the bucket. ARGV: interval (µs), burst, weight.
/// Returns `{1, 0}` when admitted, `{0, retry_after_us}` when not.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local weight = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + weight * interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
";

/// A snapshot of the limiter's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisSnapshot {
    /// Requests admitted.
    pub admitted: u64,
    /// Requests rejected by the limit.
    pub rejected: u64,
    /// Decisions Redis did not make (a call failed or timed out, or the connection was
    /// down): each went to the failure policy.
    pub backend_errors: u64,
    /// The connection's state now.
    pub link: LinkState,
    /// Times the connection went down (found broken, or could not be made).
    pub link_downs: u64,
}

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

/// The client for `cfg`'s URL with the credentials and CA in effect: no connection is
/// made. Errors quote the URL redacted.
fn connect_target(cfg: &RedisConfig) -> Result<Target, RedisError> {
    let secrets = secrets_of(cfg);
    let bad = |field: &'static str, e: ::redis::RedisError| {
        RedisError::Config(ConfigError::new(
            field,
            redact_url(&cfg.url),
            format!("not usable: {}", secrets.scrub(&e.to_string())),
        ))
    };
    let mut info: ConnectionInfo = cfg
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| bad("url", e))?;
    if let Some(password) = cfg.resolve_password()? {
        info.redis.password = Some(password);
    }
    if let Some(user) = &cfg.username {
        info.redis.username = Some(user.clone());
    }
    let tls = matches!(info.addr, ::redis::ConnectionAddr::TcpTls { .. });
    if tls {
        install_crypto_provider();
    }
    let root_cert = match &cfg.tls_ca_file {
        Some(path) => Some(config::read_ca_file(path)?),
        None => None,
    };
    let certs = || TlsCertificates {
        client_tls: None,
        root_cert: root_cert.clone(),
    };
    if cfg.cluster {
        let mut builder = ClusterClientBuilder::new(vec![info])
            .connection_timeout(cfg.connect_timeout)
            .response_timeout(cfg.timeout)
            // Few, short retries inside the cluster client: every call is bounded by
            // `timeout` anyway, and a dead node is the failure policy's to answer for.
            .retries(2)
            .min_retry_wait(5)
            .max_retry_wait(
                u64::try_from(cfg.reconnect_backoff_max.as_millis()).unwrap_or(u64::MAX),
            );
        if root_cert.is_some() {
            builder = builder.certs(certs());
        }
        Ok(Target::Cluster(builder.build().map_err(|e| bad("url", e))?))
    } else if root_cert.is_some() {
        Ok(Target::Single(
            Client::build_with_tls(info, certs()).map_err(|e| bad("tls_ca_file", e))?,
        ))
    } else {
        Ok(Target::Single(
            Client::open(info).map_err(|e| bad("url", e))?,
        ))
    }
}

/// The secrets of `cfg` to scrub from any text shown: the URL's and the `password`.
fn secrets_of(cfg: &RedisConfig) -> Secrets {
    let mut secrets = Secrets::of_url(&cfg.url);
    if let Some(password) = &cfg.password {
        secrets.add(password);
    }
    if let Some(var) = &cfg.password_env {
        if let Ok(password) = std::env::var(var) {
            secrets.add(&password);
        }
    }
    secrets
}

/// Makes rustls' ring provider the process default unless the application installed one:
/// rustls needs one to build a TLS client and cannot pick it when both ring and aws-lc-rs
/// are compiled in.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

struct State {
    link: Arc<Link>,
    /// The unkeyed bucket's Redis key.
    key: String,
    /// A keyed bucket's Redis key is this, the key, and `}`.
    prefix: String,
    interval_us: u64,
    burst: u32,
    policy: FailurePolicy,
    fallback: Option<LocalBackend>,
    hasher: RandomState,
    start: Instant,
    admitted: Counter,
    rejected: Counter,
    rejected_backend: Counter,
    backend_errors: Counter,
    n_admitted: AtomicU64,
    n_rejected: AtomicU64,
    n_errors: AtomicU64,
    name: String,
    batch: u32,
    max_keys: usize,
    /// Pre-allotted tokens left for the unkeyed bucket.
    local: AtomicU64,
    /// Pre-allotted tokens left per key (at most `max_keys` keys).
    local_keyed: Mutex<HashMap<String, u64>>,
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

impl State {
    async fn ask_redis(&self, key: &str) -> Result<(i64, i64), CallError> {
        let args = [
            self.interval_us,
            u64::from(self.burst),
            u64::from(self.batch),
        ];
        self.link.run_script(key, args).await
    }

    /// Spends one pre-allotted token of `key`, if any is left.
    fn take_local(&self, key: Option<&str>) -> bool {
        match key {
            None => self
                .local
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok(),
            Some(key) => {
                let mut map = self.local_keyed.lock().unwrap_or_else(|e| e.into_inner());
                match map.get_mut(key) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        if *n == 0 {
                            map.remove(key);
                        }
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Keeps `n` pre-allotted tokens of `key` for later. With `max_keys` keys already
    /// holding tokens, they are dropped: that only admits less, never more.
    fn keep_local(&self, key: Option<&str>, n: u64) {
        if n == 0 {
            return;
        }
        match key {
            None => {
                self.local.fetch_add(n, Relaxed);
            }
            Some(key) => {
                let mut map = self.local_keyed.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(left) = map.get_mut(key) {
                    *left += n;
                } else if map.len() < self.max_keys {
                    map.insert(key.to_owned(), n);
                }
            }
        }
    }

    async fn decide(&self, key: Option<&str>) -> Result<(), BoxError> {
        // Long keys are hashed once here: Redis, the maps and the fallback see the short form.
        let key = key.map(bounded);
        let key = key.as_deref();
        if self.batch > 1 && self.take_local(key) {
            self.admit();
            return Ok(());
        }
        let answer = match key {
            None => self.ask_redis(&self.key).await,
            Some(k) => self.ask_redis(&bucket_key(&self.prefix, k)).await,
        };
        match answer {
            Ok((1, _)) => {
                self.keep_local(key, u64::from(self.batch - 1));
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
                        Err(Box::new(RedisError::Unavailable(e.to_string())))
                    }
                    FailurePolicy::LocalFallback { .. } => {
                        let Some(bucket) = self.fallback.as_ref() else {
                            return Err(Box::new(RedisError::Unavailable(e.to_string())));
                        };
                        let now =
                            u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
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

    fn reject(&self, retry_after: Duration) -> BoxError {
        self.rejected.increment(1);
        self.n_rejected.fetch_add(1, Relaxed);
        tracing::debug!(name = %self.name, ?retry_after, "rate limited (redis)");
        Box::new(Error::RateLimited { retry_after })
    }
}

/// Picks the Redis bucket a request draws from: `None` for the limit's shared bucket.
pub trait RedisKeyFn<Req> {
    /// The request's key, as it appears in the Redis key.
    fn key(&self, request: &Req) -> Option<String>;
}

impl<Req> RedisKeyFn<Req> for Unkeyed {
    fn key(&self, _: &Req) -> Option<String> {
        None
    }
}

/// A key closure for the Redis limiter: each distinct key gets its own Redis bucket.
#[derive(Clone, Copy)]
pub struct RedisKeyBy<F>(F);

impl<F> std::fmt::Debug for RedisKeyBy<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RedisKeyBy")
            .field(&std::any::type_name::<F>())
            .finish()
    }
}

impl<Req, F, T> RedisKeyFn<Req> for RedisKeyBy<F>
where
    F: Fn(&Req) -> T,
    T: Display,
{
    fn key(&self, request: &Req) -> Option<String> {
        Some((self.0)(request).to_string())
    }
}

/// A [`Layer`] that rate limits with a limit shared through Redis. Every service it makes,
/// and every instance using the same Redis, prefix and name, shares the limit.
#[derive(Debug, Clone)]
pub struct RedisRateLimitLayer<K = Unkeyed> {
    state: Arc<State>,
    key: K,
}

impl RedisRateLimitLayer {
    /// Starts a builder for the limit `name` on the Redis at `url` (100 per second, burst
    /// 100, fail closed, 50 ms timeout, no pre-allotment).
    pub fn builder(url: impl Into<String>, name: impl Into<String>) -> RedisRateLimitBuilder {
        RedisRateLimitBuilder::from_config(name, RedisConfig::new(url, 100, Duration::from_secs(1)))
    }

    /// A layer from a config, for the limit `name`.
    pub fn from_config(name: impl Into<String>, config: &RedisConfig) -> Result<Self, RedisError> {
        RedisRateLimitBuilder::from_config(name, config.clone()).build()
    }
}

impl<K> RedisRateLimitLayer<K> {
    /// Gives each distinct key (from the closure, e.g. an API key) its own bucket: the Redis
    /// key `{<prefix>:<name>:<key>}`, with a key longer than [`MAX_KEY_BYTES`] replaced by
    /// `~sha1:` and its SHA-1 in hex.
    pub fn key_fn<F>(self, key: F) -> RedisRateLimitLayer<RedisKeyBy<F>> {
        RedisRateLimitLayer {
            state: self.state,
            key: RedisKeyBy(key),
        }
    }

    /// Asks for one token of the shared (unkeyed) bucket without a service around it:
    /// `Ok(())` when admitted, else the rejection ([`Error::RateLimited`] or
    /// [`RedisError::Unavailable`]).
    pub async fn acquire(&self) -> Result<(), BoxError> {
        self.state.decide(None).await
    }

    /// Asks for one token of `key`'s bucket, as a request with that key would.
    pub async fn acquire_key(&self, key: impl Display) -> Result<(), BoxError> {
        self.state.decide(Some(&key.to_string())).await
    }

    /// The counters so far.
    pub fn snapshot(&self) -> RedisSnapshot {
        RedisSnapshot {
            admitted: self.state.n_admitted.load(Relaxed),
            rejected: self.state.n_rejected.load(Relaxed),
            backend_errors: self.state.n_errors.load(Relaxed),
            link: self.state.link.state(),
            link_downs: self.state.link.downs(),
        }
    }
}

impl<S, K: Clone> Layer<S> for RedisRateLimitLayer<K> {
    type Service = RedisRateLimit<S, K>;
    fn layer(&self, inner: S) -> Self::Service {
        RedisRateLimit {
            inner,
            state: self.state.clone(),
            key: self.key.clone(),
        }
    }
}

/// The service made by [`RedisRateLimitLayer`]; the decision is made in the response future.
#[derive(Debug, Clone)]
pub struct RedisRateLimit<S, K = Unkeyed> {
    inner: S,
    state: Arc<State>,
    key: K,
}

/// The response future of [`RedisRateLimit`].
pub type RedisResponseFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, K, Req> Service<Req> for RedisRateLimit<S, K>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    K: RedisKeyFn<Req>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = RedisResponseFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.key.key(&req);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            state.decide(key.as_deref()).await?;
            inner.call(req).await.map_err(Into::into)
        })
    }
}
