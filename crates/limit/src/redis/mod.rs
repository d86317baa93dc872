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
//! use tower_prism_limit::redis::{FailurePolicy, RedisRateLimitLayer};
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

mod builder;
mod client;
mod config;
mod error;
mod key;
mod link;
mod redact;
mod state;

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

pub use builder::RedisRateLimitBuilder;
pub use config::{
    FailurePolicy, RedisConfig, MAX_COUNT, MAX_PREFIX_BYTES, MAX_RECONNECT_WAIT, MAX_TEXT_BYTES,
    MAX_TIMEOUT,
};
pub use error::RedisError;
pub use key::MAX_KEY_BYTES;
pub use link::LinkState;

use crate::policy::Unkeyed;
use crate::BoxError;
use state::State;

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
    /// `Ok(())` when admitted, else the rejection ([`Error::RateLimited`](crate::Error::RateLimited) or
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
