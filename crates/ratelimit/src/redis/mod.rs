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
//! ([`FailurePolicy::LocalFallback`]). The connection is a
//! With [`RedisRateLimitBuilder::pre_allot`]`(n)`, an instance takes `n` tokens per round
//! trip and hands them out locally (one atomic decrement, no round trip) before asking again.
//! Tokens are still counted in Redis when taken, so the bound becomes
//! `d * rate + burst + instances * (n - 1)` over a window `d`: an instance may spend inside
//! the window up to `n - 1` tokens it took before it.
//!
//! [`ConnectionManager`] that reconnects by itself, so the
//! limiter recovers when Redis comes back.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt, service_fn};
//! use tower_prism_ratelimit::redis::{FailurePolicy, RedisRateLimitLayer};
//!
//! # async fn run() -> Result<(), tower::BoxError> {
//! let layer = RedisRateLimitLayer::builder("redis://127.0.0.1:6379", "api")
//!     .rate(100, Duration::from_secs(1))
//!     .burst(20)
//!     .failure_policy(FailurePolicy::LocalFallback { instances: 4 })
//!     .build()?;
//! let svc = layer.layer(service_fn(|req: u32| async move { Ok::<_, tower::BoxError>(req) }));
//! let _ = svc.oneshot(1).await;
//! # Ok(()) }
//! ```

mod error;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{Client, Script};
use metrics::Counter;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_prism_core::metrics::ratelimit::{ADMITTED_TOTAL, BACKEND_ERRORS_TOTAL, REJECTED_TOTAL};
use tower_prism_core::metrics::{LABEL_NAME, LABEL_REASON};
use tower_service::Service;

pub use error::RedisError;

use crate::bucket::{AtomicBucket, Quota};
use crate::Error;

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

/// What to do with a request when Redis cannot be reached in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Admit it.
    FailOpen,
    /// Reject it with [`RedisError::Unavailable`].
    FailClosed,
    /// Decide with an in-process bucket of `rate / instances` and `burst / instances`.
    LocalFallback {
        /// How many instances share the limit (at least 1).
        instances: u32,
    },
}

/// A snapshot of the limiter's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisSnapshot {
    /// Requests admitted.
    pub admitted: u64,
    /// Requests rejected by the limit.
    pub rejected: u64,
    /// Redis calls that failed or timed out.
    pub backend_errors: u64,
}

/// Builder of a [`RedisRateLimitLayer`]; see [`RedisRateLimitLayer::builder`].
#[derive(Debug, Clone)]
pub struct RedisRateLimitBuilder {
    url: String,
    name: String,
    prefix: String,
    rate: u64,
    per: Duration,
    burst: Option<u32>,
    timeout: Duration,
    policy: FailurePolicy,
    batch: u32,
}

impl RedisRateLimitBuilder {
    /// Takes `n` tokens from Redis per round trip and spends them locally (default 1: no
    /// pre-allotment). Must not exceed the burst. See the module docs for the bound.
    pub fn pre_allot(mut self, n: u32) -> Self {
        self.batch = n;
        self
    }
    /// `rate` requests per `per` (default 100 per second).
    pub fn rate(mut self, rate: u64, per: Duration) -> Self {
        self.rate = rate;
        self.per = per;
        self
    }
    /// Requests admitted at once when the bucket is full (default: `rate`).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }
    /// Key prefix (default `prism`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Timeout of every Redis call, connecting included (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// What happens when Redis fails (default [`FailurePolicy::FailClosed`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Checks the configuration and the URL (without connecting: the connection is made on
    /// first use, so a limiter can start while Redis is down).
    pub fn build(self) -> Result<RedisRateLimitLayer, RedisError> {
        if self.rate == 0 {
            return Err(RedisError::Config("rate must be > 0".into()));
        }
        if self.per.is_zero() || self.timeout.is_zero() {
            return Err(RedisError::Config("period and timeout must be > 0".into()));
        }
        if self.burst == Some(0) {
            return Err(RedisError::Config("burst must be > 0".into()));
        }
        if let FailurePolicy::LocalFallback { instances: 0 } = self.policy {
            return Err(RedisError::Config("instances must be > 0".into()));
        }
        let client = Client::open(self.url.as_str())
            .map_err(|e| RedisError::Config(format!("bad redis url {:?}: {e}", self.url)))?;
        // The script works in whole microseconds (Redis `TIME`), so at most 1 token per µs.
        let interval_us = self.per.as_micros() / u128::from(self.rate);
        if interval_us == 0 {
            return Err(RedisError::Config(
                "rate too high: at most one token per microsecond per key".into(),
            ));
        }
        let interval_us =
            u64::try_from(interval_us).map_err(|_| RedisError::Config("period too long".into()))?;
        let burst = self
            .burst
            .unwrap_or_else(|| u32::try_from(self.rate).unwrap_or(u32::MAX));
        if self.batch == 0 || self.batch > burst {
            return Err(RedisError::Config(format!(
                "pre_allot must be in 1..=burst ({burst}), got {}",
                self.batch
            )));
        }
        let fallback = match self.policy {
            FailurePolicy::LocalFallback { instances } => Some(AtomicBucket::new(Quota {
                interval_nanos: interval_us.saturating_mul(1000 * u64::from(instances)),
                burst: (burst / instances).max(1),
            })),
            _ => None,
        };
        let labels = [(LABEL_NAME, self.name.clone())];
        let state = State {
            client,
            conn: OnceCell::new(),
            script: Script::new(GCRA),
            key: format!("{{{}:{}}}", self.prefix, self.name),
            interval_us,
            burst,
            timeout: self.timeout,
            policy: self.policy,
            fallback,
            start: Instant::now(),
            admitted: metrics::counter!(ADMITTED_TOTAL, &labels),
            rejected: metrics::counter!(REJECTED_TOTAL, LABEL_NAME => self.name.clone(), LABEL_REASON => "rate"),
            backend_errors: metrics::counter!(BACKEND_ERRORS_TOTAL, &labels),
            n_admitted: Default::default(),
            n_rejected: Default::default(),
            n_errors: Default::default(),
            name: self.name,
            batch: self.batch,
            local: Default::default(),
        };
        Ok(RedisRateLimitLayer {
            state: Arc::new(state),
        })
    }
}

struct State {
    client: Client,
    conn: OnceCell<ConnectionManager>,
    script: Script,
    key: String,
    interval_us: u64,
    burst: u32,
    timeout: Duration,
    policy: FailurePolicy,
    fallback: Option<AtomicBucket>,
    start: Instant,
    admitted: Counter,
    rejected: Counter,
    backend_errors: Counter,
    n_admitted: std::sync::atomic::AtomicU64,
    n_rejected: std::sync::atomic::AtomicU64,
    n_errors: std::sync::atomic::AtomicU64,
    name: String,
    batch: u32,
    local: std::sync::atomic::AtomicU64,
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

use std::sync::atomic::Ordering::Relaxed;

impl State {
    async fn ask_redis(&self) -> Result<(i64, i64), String> {
        let conn = tokio::time::timeout(
            self.timeout,
            self.conn
                .get_or_try_init(|| ConnectionManager::new(self.client.clone())),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let mut conn = conn.clone();
        let mut inv = self.script.key(&self.key);
        inv.arg(self.interval_us).arg(self.burst).arg(self.batch);
        let r: Result<(i64, i64), _> =
            tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
                .await
                .map_err(|_| "redis call timed out".to_string())?;
        r.map_err(|e| e.to_string())
    }

    async fn decide(&self) -> Result<(), tower_service_box::BoxError> {
        if self.batch > 1
            && self
                .local
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok()
        {
            self.admit();
            return Ok(());
        }
        match self.ask_redis().await {
            Ok((1, _)) => {
                self.local.fetch_add(u64::from(self.batch - 1), Relaxed);
                self.admit();
                Ok(())
            }
            Ok((_, retry_us)) => Err(self.reject(Duration::from_micros(retry_us.max(0) as u64))),
            Err(e) => {
                self.backend_errors.increment(1);
                self.n_errors.fetch_add(1, Relaxed);
                tracing::warn!(name = %self.name, error = %e, policy = ?self.policy, "redis rate limiter backend error");
                match self.policy {
                    FailurePolicy::FailOpen => {
                        self.admit();
                        Ok(())
                    }
                    FailurePolicy::FailClosed => Err(Box::new(RedisError::Unavailable(e))),
                    FailurePolicy::LocalFallback { .. } => {
                        let Some(bucket) = self.fallback.as_ref() else {
                            return Err(Box::new(RedisError::Unavailable(e)));
                        };
                        let now =
                            u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        match bucket.try_acquire(now, 1) {
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

    fn reject(&self, retry_after: Duration) -> tower_service_box::BoxError {
        self.rejected.increment(1);
        self.n_rejected.fetch_add(1, Relaxed);
        tracing::debug!(name = %self.name, ?retry_after, "rate limited (redis)");
        Box::new(Error::RateLimited { retry_after })
    }
}

mod tower_service_box {
    /// Boxed error, as `tower::BoxError`.
    pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
}

/// A [`Layer`] that rate limits with a limit shared through Redis.
#[derive(Debug, Clone)]
pub struct RedisRateLimitLayer {
    state: Arc<State>,
}

impl RedisRateLimitLayer {
    /// Starts a builder for the limit `name` on the Redis at `url`.
    pub fn builder(url: impl Into<String>, name: impl Into<String>) -> RedisRateLimitBuilder {
        RedisRateLimitBuilder {
            url: url.into(),
            name: name.into(),
            prefix: "prism".into(),
            rate: 100,
            per: Duration::from_secs(1),
            burst: None,
            timeout: Duration::from_millis(50),
            policy: FailurePolicy::FailClosed,
            batch: 1,
        }
    }

    /// Asks for one token without a service around it: `Ok(())` when admitted, else the
    /// rejection ([`Error::RateLimited`] or [`RedisError::Unavailable`]).
    pub async fn acquire(&self) -> Result<(), tower_service_box::BoxError> {
        self.state.decide().await
    }

    /// The counters so far.
    pub fn snapshot(&self) -> RedisSnapshot {
        RedisSnapshot {
            admitted: self.state.n_admitted.load(Relaxed),
            rejected: self.state.n_rejected.load(Relaxed),
            backend_errors: self.state.n_errors.load(Relaxed),
        }
    }
}

impl<S> Layer<S> for RedisRateLimitLayer {
    type Service = RedisRateLimit<S>;
    fn layer(&self, inner: S) -> RedisRateLimit<S> {
        RedisRateLimit {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service made by [`RedisRateLimitLayer`]; the decision is made in the response future.
#[derive(Debug, Clone)]
pub struct RedisRateLimit<S> {
    inner: S,
    state: Arc<State>,
}

/// The response future of [`RedisRateLimit`].
pub type RedisResponseFuture<T> =
    Pin<Box<dyn Future<Output = Result<T, tower_service_box::BoxError>> + Send>>;

impl<S, Req> Service<Req> for RedisRateLimit<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<tower_service_box::BoxError>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = tower_service_box::BoxError;
    type Future = RedisResponseFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            state.decide().await?;
            inner.call(req).await.map_err(Into::into)
        })
    }
}
