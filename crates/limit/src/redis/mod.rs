//! Distributed rate limiting on Redis (feature `redis`).
//!
//! Every decision is one round trip: a GCRA step in a Lua script (`EVALSHA`, loaded again on
//! `NOSCRIPT`) that reads the clock with `redis.call('TIME')`, so the instances' clocks do
//! not matter, and stores the bucket's theoretical arrival time under a hash-tagged key
//! `{<prefix>:<name>}` with a `PX` expiry so memory stays bounded. All instances that use
//! the same Redis, prefix and name share one limit: over any window `d`, at most
//! `d * rate + burst` requests are admitted in total.
//!
//! Every Redis call has a timeout, on tokio's timer: calls need a tokio runtime with time
//! enabled (`#[tokio::main]` enables it; a runtime built with `enable_io` alone makes tokio
//! panic at the first call, as tower's `Timeout` does). Outside any runtime a call is an
//! error, not a panic. When Redis fails, the [`FailurePolicy`] decides:
//! admit ([`FailurePolicy::FailOpen`]), reject with [`Error::Unavailable`](crate::Error::Unavailable)
//! ([`FailurePolicy::FailClosed`]) or use an in-process bucket sized `rate / instances`
//! ([`FailurePolicy::LocalFallback`]). A call that times out or finds the connection
//! broken turns the connection [`LinkState::Down`]: from then on calls take the failure
//! policy at once, without waiting, while one background task reconnects (at once, then
//! with a backoff doubling from `reconnect_backoff` to `reconnect_backoff_max`, 25 ms to
//! 250 ms by default, each attempt bounded by `connect_timeout`). Decisions come from Redis
//! again within `reconnect_backoff_max` plus one connection of its return. A server that
//! accepts connections but does not answer (packets dropped, or slower than `timeout`) costs
//! one timeout, then fails fast the same way; one that answers a reconnection but keeps
//! letting calls time out (paused for a failover), or answers `READONLY` (a replica behind
//! the address), is put on probation ([`LinkState::Probing`]): one call per reconnection
//! goes to it, the others fail fast, and the wait between reconnections grows.
//!
//! TLS (`rediss://`, rustls: no OpenSSL) and AUTH are supported; the password can come from
//! the `password` setting or an environment variable (`password_env`) instead of the URL,
//! and is never shown: URLs in `Debug`, errors and logs have it replaced by `***`.
//!
//! Keys longer than [`RedisConfig::MAX_KEY_BYTES`] (and keys starting with `~`, so none
//! can pass for a hashed one) are replaced in Redis key names by their SHA-1, so no key
//! makes a Redis key (or an instance's map entry) longer than 46 bytes plus the prefix. A
//! limit's name may not hold `:`, `{` or `}`, which shape the keys.
//!
//! With [`RedisRateLimitLayer::key_fn`], each key of the request (an API key, a client
//! address) has its own bucket, the Redis key `{<prefix>:<name>:<key>}`; the hash tag
//! spans the whole key, so keys spread over the slots of a Redis Cluster
//! ([`RedisConfigBuilder::cluster`], `cluster = true`: the URL is then a seed node, and
//! each script runs on the node owning its key, redirections followed). A dead node fails
//! only the keys it serves; the link goes `Down` (every call failing fast, the cluster
//! connection remade in the background) only when five calls in a row over at least
//! `timeout` found no node, none answered in between. Memory stays
//! bounded on both sides: every Redis key expires once its bucket is full again, and an
//! instance keeps pre-allotted tokens and fallback buckets for at most `max_keys` keys.
//!
//! With [`RedisConfigBuilder::pre_allot`]`(n)`, an instance takes `n` tokens per round
//! trip and hands them out locally (no round trip) before asking again. Tokens are still
//! counted in Redis when taken, so the bound becomes
//! `d * rate + burst + instances * (n - 1)` over a window `d` (per key): an instance may
//! spend inside the window up to `n - 1` tokens it took before it.
//!
//! Settings come from a file or [`RedisConfig::builder`] as a [`RedisConfig`];
//! [`RedisRateLimitLayer::builder`] adds the limit's name, [`RedisRateLimitLayer::key_fn`]
//! a key per request, and [`RedisRateLimitLayer::handle`] reaches the shared
//! [`RedisRateLimiter`] for [`snapshot`](RedisRateLimiter::snapshot)s.
//!
//! # Example
//!
//! ```no_run
//! use tower::{Layer, ServiceExt, service_fn};
//! use tower_prism_limit::redis::{FailurePolicy, RedisConfig, RedisRateLimitLayer};
//!
//! # async fn run() -> Result<(), tower::BoxError> {
//! struct Req { api_key: String }
//! let config = RedisConfig::builder("redis://127.0.0.1:6379")
//!     .rate(100)
//!     .burst(20)
//!     .failure_policy(FailurePolicy::LocalFallback { instances: 4 })
//!     .build()?;
//! let layer = RedisRateLimitLayer::builder(config)
//!     .name("api")
//!     .build()?
//!     .key_fn(|req: &Req| req.api_key.clone());
//! let svc = layer.layer(service_fn(|req: Req| async move { Ok::<_, tower::BoxError>(req.api_key) }));
//! let _ = svc.oneshot(Req { api_key: "k1".into() }).await;
//! # Ok(()) }
//! ```

mod client;
mod config;
mod config_builder;
mod future;
mod key;
mod layer;
mod limiter;
mod link;
mod policy;
mod redact;
mod service;
mod state;

pub use config::{FailurePolicy, RedisConfig};
pub use config_builder::RedisConfigBuilder;
pub use future::ResponseFuture;
pub use layer::{RedisRateLimitLayer, RedisRateLimitLayerBuilder};
pub use limiter::{RedisRateLimiter, RedisSnapshot};
pub use link::LinkState;
pub use policy::{RedisKeyBy, RedisKeyFn};
