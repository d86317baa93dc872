//! Rate limiting for [tower]: a lock-free token bucket (GCRA) shared by every clone, with
//! weights, per-key buckets of bounded memory, a bounded priority wait queue and an
//! adaptive rate that follows downstream health.
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_limit::{Error, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = RateLimitLayer::builder()
//!     .rate(2, Duration::from_secs(1))
//!     .burst(2)
//!     .name("example")
//!     .build()
//!     .expect("a valid config");
//! let limiter = layer.limiter().clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) }));
//!
//! assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 2);
//! assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 4);
//! let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
//! let err = err.downcast_ref::<Error>().expect("a rate limiter error");
//! assert!(matches!(err, Error::RateLimited { retry_after } if *retry_after <= Duration::from_millis(500)));
//! assert_eq!(limiter.snapshot().tokens, 0);
//! # }
//! ```
//!
//! Per-key limits, priorities and weights are closures over the request:
//!
//! ```
//! # use std::time::Duration;
//! # use tower_prism_limit::RateLimitLayer;
//! struct Req { api_key: String, urgent: bool, batch: u32 }
//! let layer = RateLimitLayer::builder()
//!     .rate(100, Duration::from_secs(1))
//!     .queue(64, Duration::from_millis(250))
//!     .max_keys(10_000)
//!     .build()
//!     .unwrap()
//!     .key_fn(|r: &Req| r.api_key.clone())
//!     .priority_fn(|r: &Req| if r.urgent { 10 } else { 0 })
//!     .weight_fn(|r: &Req| r.batch);
//! # let _ = layer;
//! ```
//!
//! Rejections are [`Error`]s in a [`BoxError`], returned from the response future, never
//! from `poll_ready`. The admit path of an unkeyed limiter takes no lock and allocates
//! nothing. A keyed admission takes one shard lock for bounded work (a lookup; a new key
//! looks at no more than 8 tracked keys), and allocates nothing once the map has grown;
//! waiting and adaptation take short locks off the admit path.
//!
//! The buckets read [`tokio::time::Instant`] by default, so `tokio::time::pause()` drives
//! them in tests; [`Clock::Tsc`] (`.clock(Clock::Tsc)`, `clock = "tsc"`) reads the CPU's
//! time-stamp counter instead (an uncontended admission went from ~48 ns to ~31 ns in
//! `BENCHMARKS.md`), but does not follow paused time.
//!
//! Behind the `redis` cargo feature, the `redis` module shares one limit (per key, if
//! wanted) across every instance of a service, with a GCRA script on Redis (one server or
//! a Redis Cluster).
//!
//! [tower]: https://docs.rs/tower

pub mod adaptive;
pub mod backend;
pub mod bucket;
pub mod concurrency;
mod config;
mod error;
mod future;
mod keyed;
mod layer;
mod limiter;
pub mod policy;
mod queue;
#[cfg(feature = "redis")]
pub mod redis;
mod service;

pub use adaptive::AdaptiveConfig;
pub use backend::{Backend, LocalBackend};
pub use concurrency::{
    ConcurrencyConfig, ConcurrencyError, ConcurrencyLimit, ConcurrencyLimitLayer,
    ConcurrencyLimiter,
};
pub use config::RateLimitConfig;
pub use error::Error;
pub use future::ResponseFuture;
pub use layer::{RateLimitBuilder, RateLimitLayer};
pub use limiter::{RateLimiter, Snapshot};
pub use service::RateLimit;
pub use tower_prism_core::Clock;

/// The error type of the services here: any error, boxed (as `tower::BoxError`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
