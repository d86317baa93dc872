//! tower-prism: reliability middleware for tower, as one layer.
//!
//! [`ReliabilityLayer`] stacks rate limit -> concurrency limit -> circuit breaker -> retry ->
//! balance over any tower [`Service`](tower_service::Service), each stage optional, always in
//! that order; the
//! stages share one [`HealthSignal`](tower_prism_core::HealthSignal). Policies can come from a
//! TOML file ([`ReliabilityConfig`]) and be reloaded while running ([`Policies`]). Every
//! error classifies into one [`Error`] with a [`kind`](Error::kind), and
//! [`HttpErrorLayer`] turns them into HTTP responses (429/503 with `Retry-After`, 502, 504).
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_prism::limit::RateLimitConfig;
//! use tower_prism::{Error, ErrorKind, ReliabilityLayer, ServiceBuilderExt};
//!
//! # tokio_test::block_on(async {
//! let policy = ReliabilityLayer::builder()
//!     .name("payments")
//!     .rate_limit(RateLimitConfig::new(2, Duration::from_secs(60)))
//!     .build()?;
//!
//! let service = ServiceBuilder::new()
//!     .reliability(policy)
//!     .service(service_fn(|amount: u32| async move { Ok::<_, std::io::Error>(amount) }));
//!
//! assert_eq!(service.clone().oneshot(10).await.unwrap(), 10);
//! assert_eq!(service.clone().oneshot(20).await.unwrap(), 20);
//! let shed = Error::from_box(service.clone().oneshot(30).await.unwrap_err());
//! assert_eq!(shed.kind(), ErrorKind::RateLimited);
//! assert_eq!(shed.status(), 429);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! The component crates are re-exported as [`limit`], [`breaker`], [`retry`],
//! [`balance`] and [`core`].

mod builder;
mod components;
mod config;
mod config_error;
mod error;
mod ext;
mod future;
mod http;
mod layer;
mod names;
mod parse_error;
mod policies;
mod profile;
mod reload;
mod service;
mod snapshot;
mod stack;
mod stages;

pub use builder::ReliabilityLayerBuilder;
pub use config::{PolicyConfig, ReliabilityConfig};
pub use config_error::ConfigFileError;
pub use error::{retry_after_hint, Error, ErrorKind};
pub use ext::{protect, Protected, ServiceBuilderExt};
pub use future::ResponseFuture;
pub use http::{HttpErrorLayer, HttpErrors, HttpErrorsFuture};
pub use layer::{Balanced, ReliabilityLayer};
pub use names::MAX_POLICY_NAME;
pub use parse_error::{ParseError, MAX_PARSE_MESSAGE};
pub use policies::Policies;
pub use profile::{Classified, Generic, Http, HttpServer, Profile, SendOnce};
pub use service::Reliability;
pub use snapshot::Snapshot;

pub use tower_prism_core::{
    metrics, BoxError, Classify, Clock, ConfigError, DefaultClassifier, HealthReader, HealthSignal,
    HealthStats, HttpClassifier, Outcome,
};

pub use tower_prism_balance as balance;
pub use tower_prism_breaker as breaker;
pub use tower_prism_limit as limit;
pub use tower_prism_retry as retry;
