//! Rate limiting: a lock-free token bucket (GCRA) shared by every clone, with weights,
//! per-key buckets of bounded memory, a bounded priority wait queue and an adaptive rate
//! that follows downstream health.
//!
//! # Overview
//!
//! A [`RateLimitConfig`] (from a file, or [`RateLimitConfig::builder`]) describes the
//! bucket: `rate` tokens per `period`, a `burst`, an optional wait queue (`queue_size`,
//! `max_wait`), the key cap of per-key buckets and an optional [`AdaptiveConfig`].
//! [`RateLimitLayer::from_config`] makes the layer; [`RateLimitLayer::builder`] adds what a
//! file cannot say (the policy `name`, the `health` signal an adaptive rate follows). Every
//! service the layer makes shares one [`RateLimiter`], reached with
//! [`RateLimitLayer::handle`] or [`RateLimit::handle`], for
//! [`snapshot`](RateLimiter::snapshot)s and [`reconfigure`](RateLimiter::reconfigure).
//!
//! Rejections are [`Error`](crate::Error)s in a `BoxError`, returned from the response
//! future, never from `poll_ready`. The admit path of an unkeyed limiter takes no lock and
//! allocates nothing. A keyed admission takes one shard lock for bounded work (a lookup; a
//! new key looks at no more than 8 tracked keys), and allocates nothing once the map has
//! grown; waiting and adaptation take short locks off the admit path.
//!
//! The buckets read the CPU's time-stamp counter by default (as governor does), unless
//! tokio's clock is paused when the limiter first reads the time: then they read
//! `tokio::time::Instant`, so `tokio::time::pause()` drives them in tests
//! ([`Clock::Auto`]; `clock = "tokio"` or `"tsc"` picks one clock for good).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_limit::rate::{RateLimitConfig, RateLimitLayer};
//! use tower_prism_limit::Error;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let config = RateLimitConfig::builder().rate(2).burst(2).build()?;
//! let layer = RateLimitLayer::builder(config).name("example").build()?;
//! let limiter = layer.handle().clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) }));
//!
//! assert_eq!(svc.ready().await?.call(1).await?, 2);
//! assert_eq!(svc.ready().await?.call(2).await?, 4);
//! let err = svc.ready().await?.call(3).await.unwrap_err();
//! let err = err.downcast_ref::<Error>().expect("a limiter error");
//! assert!(matches!(err, Error::RateLimited { retry_after } if *retry_after <= Duration::from_millis(500)));
//! assert_eq!(limiter.snapshot().tokens, 0);
//! # Ok(()) }
//! ```
//!
//! # HTTP keys and headers
//!
//! [`RateLimitLayerBuilder::build_http`] makes a layer for `http::Request`s keyed by the
//! config's [`key`](RateLimitConfig::key) ([`HttpKey`]: the peer's IP, the client's IP
//! behind a number of trusted proxies, a header such as an API key, the route, a path
//! prefix, or a list of these), hashed straight into the limiter so no key is larger than
//! a `u64`. Its rejections are [`RateLimitRejection`]s (the [`Error`](crate::Error) is
//! their source) that carry the limit and when to retry, for a 429's headers; with
//! [`headers`](RateLimitConfig::headers) set, admitted responses carry `RateLimit-Policy`,
//! `RateLimit` and `X-RateLimit-Limit/Remaining/Reset` too ([`HttpHeaders`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_limit::rate::{RateLimitConfig, RateLimitLayer, RateLimitRejection};
//!
//! let config: RateLimitConfig = toml::from_str(r#"
//!     rate = 2
//!     period = "1m"
//!     key = { client_ip = { trusted_proxies = 1 } }
//!     headers = true
//! "#)?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::builder(config).name("api").build_http()?)
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     }));
//! let from = |client: &str| {
//!     let mut req = http::Request::builder().header("x-forwarded-for", client).body(()).unwrap();
//!     req.extensions_mut().insert("10.0.0.1:443".parse::<std::net::SocketAddr>().unwrap());
//!     req
//! };
//! let ok = svc.ready().await?.call(from("203.0.113.7")).await?;
//! assert_eq!(ok.headers()["ratelimit"], "\"api\";r=1;t=30");
//! svc.ready().await?.call(from("203.0.113.7")).await?;
//! let err = svc.ready().await?.call(from("203.0.113.7")).await.unwrap_err();
//! let rejection = err.downcast_ref::<RateLimitRejection>().unwrap();
//! assert_eq!((rejection.info().limit, rejection.info().remaining), (2, 0));
//! // Another client behind the same proxy has its own bucket.
//! assert!(svc.ready().await?.call(from("203.0.113.8")).await.is_ok());
//! # Ok(()) }
//! ```
//!
//! Per-key limits, priorities and weights are closures over the request, set on the
//! layer:
//!
//! ```
//! # use std::time::Duration;
//! # use tower_prism_limit::rate::{RateLimitConfig, RateLimitLayer};
//! struct Req { api_key: String, urgent: bool, batch: u32 }
//! let config = RateLimitConfig::builder()
//!     .rate(100)
//!     .queue_size(64)
//!     .max_wait(Duration::from_millis(250))
//!     .max_keys(10_000)
//!     .build()
//!     .unwrap();
//! let layer = RateLimitLayer::from_config(&config)
//!     .unwrap()
//!     .key_fn(|r: &Req| r.api_key.clone())
//!     .priority_fn(|r: &Req| if r.urgent { 10 } else { 0 })
//!     .weight_fn(|r: &Req| r.batch);
//! # let _ = layer;
//! ```

mod adapt;
mod adaptive;
mod config;
mod config_builder;
#[doc(hidden)]
pub mod direct;
mod forwarded;
mod future;
mod headers;
mod http_key;
mod key_config;
mod layer;
mod limiter;
mod metrics;
mod policy;
mod service;
mod waiter;

pub use crate::bucket::TokensLeft;
pub use adaptive::AdaptiveConfig;
pub use config::RateLimitConfig;
#[cfg(feature = "redis")]
pub(crate) use config::{check_quota, check_spacing};
pub use config_builder::RateLimitConfigBuilder;
pub use future::ResponseFuture;
pub use headers::{
    HeaderStamp, HttpHeaders, NoHeaders, RateHeaders, RateLimitInfo, RateLimitRejection, RATELIMIT,
    RATELIMIT_POLICY, X_RATELIMIT_AFTER, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
};
pub use http_key::HttpKey;
pub use key_config::{ClientIpKey, ForwardedHeader, HeaderKey, KeyConfig, KeyPart, MissingHeader};
pub use layer::{RateLimitLayer, RateLimitLayerBuilder};
pub use limiter::{RateLimitSnapshot, RateLimiter};
pub use policy::{
    KeyBy, KeyFn, PriorityBy, PriorityFn, SamePriority, UnitWeight, Unkeyed, WeightBy, WeightFn,
};
pub use service::RateLimit;
pub use tower_prism_core::Clock;
