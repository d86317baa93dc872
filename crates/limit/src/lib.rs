//! Limits for [tower] services: how many requests per period ([`rate`]), how many at once
//! ([`concurrency`]), and a rate shared by every instance of a service through Redis
//! (`redis`, behind the `redis` feature). Part of [tower-prism].
//!
//! # Overview
//!
//! The two ways to bound what reaches a service, as tower's own `limit::{rate,
//! concurrency}`:
//!
//! - [`rate`]: a lock-free token bucket (GCRA) shared by every clone of the service, with
//!   request weights, per-key buckets of bounded memory, a bounded priority wait queue and
//!   an adaptive rate that follows downstream health.
//! - [`concurrency`]: a cap on requests in flight that follows the queue the downstream's
//!   latency shows (Vegas by default; AIMD or a latency gradient, which also read
//!   failures), failing fast or waiting a bounded time.
//! - `redis` (feature `redis`): one rate limit (per key, if wanted) shared by every
//!   instance of a service, decided by a GCRA script on Redis or a Redis Cluster, with a
//!   failure policy for when Redis cannot answer.
//!
//! Every component has the same shape: a serde `XConfig` with a builder and `validate`, an
//! `XLayer` made `from_config` (or with a `builder` for what only code can give: a name,
//! key functions, a health signal), and a shared handle reached with `handle()` for
//! `snapshot()` and `reconfigure()`.
//!
//! Rejections come from the response future, never from `poll_ready`, as one [`Error`]
//! boxed in a `tower::BoxError`; downcast to read it (`retry_after`, the limit...).
//!
//! For HTTP servers, [`RateLimitLayerBuilder::build_http`](rate::RateLimitLayerBuilder::build_http)
//! keys requests by the config's `key` (peer IP, client IP behind trusted proxies, an API
//! key header, the route or a path prefix, or a combination; see
//! [`KeyConfig`](rate::KeyConfig)) and writes the IETF `RateLimit-Policy` / `RateLimit`
//! and the `X-RateLimit-*` headers ([`HttpHeaders`](rate::HttpHeaders)).
//!
//! A limit a policy leaves out can still sit in the stack:
//! [`RateLimit::pass_through`](rate::RateLimit::pass_through) and
//! [`ConcurrencyLimit::pass_through`](concurrency::ConcurrencyLimit::pass_through) build the
//! same service types with no limiter (their `handle()` is `None`), forwarding every call at
//! the cost of one branch, so a stack of optional stages stays one type instead of nesting
//! `Either`s.
//!
//! # Example
//!
//! A rate limit of 100 requests a second (bursts of 20) in front of a concurrency limit of
//! at most 10 requests in flight:
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_limit::concurrency::{ConcurrencyConfig, ConcurrencyLimitLayer};
//! use tower_prism_limit::rate::{RateLimitConfig, RateLimitLayer};
//! use tower_prism_limit::Error;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let rate = RateLimitLayer::from_config(&RateLimitConfig::builder().rate(100).burst(20).build()?)?;
//! let concurrency = ConcurrencyLimitLayer::from_config(&ConcurrencyConfig::fixed(10))?;
//! let limiter = rate.handle().clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(rate)
//!     .layer(concurrency)
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) }));
//!
//! for n in 0..20 {
//!     assert_eq!(svc.ready().await?.call(n).await?, n * 2);
//! }
//! // The burst is spent: the next call is refused, and told when to come back.
//! let err = svc.ready().await?.call(20).await.unwrap_err();
//! assert!(matches!(err.downcast_ref::<Error>(), Some(Error::RateLimited { .. })));
//! assert_eq!(limiter.snapshot().tokens, 0);
//! # Ok(()) }
//! ```
//!
//! The same limits from a config file:
//!
//! ```
//! use tower_prism_limit::concurrency::ConcurrencyConfig;
//! use tower_prism_limit::rate::RateLimitConfig;
//!
//! let rate: RateLimitConfig = toml::from_str("rate = 100\nburst = 20").unwrap();
//! let concurrency: ConcurrencyConfig = toml::from_str("initial_limit = 10\nmin_limit = 10\nmax_limit = 10").unwrap();
//! assert_eq!(rate, RateLimitConfig::builder().rate(100).burst(20).build().unwrap());
//! assert_eq!(concurrency, ConcurrencyConfig::fixed(10));
//! ```
//!
//! # Feature flags
//!
//! - `redis` (off by default): the `redis` module, a rate limit shared through Redis (TLS
//!   with rustls and AUTH included).
//! - `axum` (off by default): [`HttpKey`](rate::HttpKey) also reads axum's
//!   `ConnectInfo<SocketAddr>` (the peer) and `MatchedPath` (the route) request
//!   extensions.
//!
//! [tower]: https://docs.rs/tower
//! [tower-prism]: https://docs.rs/tower-prism

#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod bucket;
pub mod concurrency;
mod error;
mod keyed;
mod queue;
pub mod rate;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

pub use error::Error;
