//! Adaptive concurrency limiting: a cap on requests in flight that follows the downstream's
//! latency and failures (AIMD, or a gradient in the manner of Netflix's Gradient2).
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_limit::concurrency::{AimdConfig, ConcurrencyError, ConcurrencyLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = ConcurrencyLimitLayer::builder()
//!     .name("backend")
//!     .initial_limit(1)
//!     .limits(1, 50)
//!     .aimd(AimdConfig::default())
//!     .build()
//!     .expect("a valid config");
//! let limiter = layer.limiter().clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n + 1) }));
//!
//! // One call holds the only permit, so a second one is turned away at once.
//! let first = svc.ready().await.unwrap().call(1);
//! let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
//! assert_eq!(
//!     err.downcast_ref::<ConcurrencyError>(),
//!     Some(&ConcurrencyError::LimitReached { limit: 1 })
//! );
//! // The first finishes under full load, a healthy sample: AIMD raises the limit.
//! assert_eq!(first.await.unwrap(), 2);
//! assert_eq!(limiter.snapshot().limit, 2);
//! assert_eq!(limiter.snapshot().in_flight, 0);
//! # }
//! ```
//!
//! Over the limit a request fails fast from its response future (never from `poll_ready`),
//! or waits up to `max_wait` for a permit. Acquiring a permit is one compare-and-swap on a
//! packed atomic and allocates nothing; the permit is returned when the call completes or
//! its future is dropped.

mod algorithm;
mod config;
mod error;
mod future;
mod layer;
mod limiter;
mod permits;
mod service;

pub use algorithm::{LimitState, Sample};
pub use config::{AimdConfig, ConcurrencyConfig, GradientConfig, LimitAlgorithm};
pub use error::ConcurrencyError;
pub use future::ResponseFuture;
pub use layer::{ConcurrencyLimitBuilder, ConcurrencyLimitLayer};
pub use limiter::{ConcurrencyLimiter, ConcurrencySnapshot, Permit};
pub use permits::Permits;
pub use service::ConcurrencyLimit;
