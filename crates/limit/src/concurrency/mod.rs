//! Adaptive concurrency limiting: a cap on requests in flight that follows the queue the
//! downstream's latency shows (Vegas, the default), or its latency and failures (AIMD, or a
//! gradient in the manner of Netflix's Gradient2).
//!
//! # Overview
//!
//! A [`ConcurrencyConfig`] (from a file, or [`ConcurrencyConfig::builder`]) gives the
//! limit's start and bounds, how long a request may wait for a permit, and the
//! [`LimitAlgorithm`] that moves the limit. [`ConcurrencyLimitLayer::from_config`] makes the
//! layer; [`ConcurrencyLimitLayer::builder`] adds what a file cannot say (the policy `name`,
//! how results are [classified](ConcurrencyLimitLayerBuilder::classify)). Every service the
//! layer makes shares one [`ConcurrencyLimiter`], reached with
//! [`ConcurrencyLimitLayer::handle`] or [`ConcurrencyLimit::handle`], for
//! [`snapshot`](ConcurrencyLimiter::snapshot)s, [`reconfigure`](ConcurrencyLimiter::reconfigure)
//! and permits taken by hand ([`try_acquire`](ConcurrencyLimiter::try_acquire)).
//!
//! # The default: Vegas
//!
//! [`LimitAlgorithm::Vegas`] compares each round trip's mean latency with the service's
//! no-load latency, which it measures (and re-measures with a short probe now and then),
//! and keeps the few calls that wait in the service between [`VegasConfig::alpha`] and
//! [`VegasConfig::beta`]. Nothing is set by hand: under overload the service stays busy,
//! its latency stays near the no-load value and the excess is refused at once with
//! [`Error::ConcurrencyLimited`](crate::Error::ConcurrencyLimited). Errors are not read:
//! they are the circuit breaker's and the retries' business. An outage, fast errors or
//! timeouts, leaves the limit where it was, so every failure still reaches a breaker below
//! it, and a brownout sheds nothing the service could have served. One failure is read:
//! the service's own word that it sheds (a failure the classifier finds a `Retry-After`
//! in, as [`HttpClassifier`](tower_prism_core::HttpClassifier) does in a 429 or 503) cuts
//! the limit by `log10(limit)`, once per round trip, as Netflix's Vegas does on a drop.
//!
//! Above a tower-prism retry stage (the facade's order), a request's latency sample is the
//! attempt that answered, not the whole request: a retried request does not read as a
//! queue. It keeps its slot while it waits to retry. An attempt the service shed, whose
//! `Retry-After` the retry waits out, cuts the limit at once.
//!
//! [`LimitAlgorithm::Aimd`] (optionally with a `latency_threshold`) and
//! [`LimitAlgorithm::Gradient`] read every failure as overload: pick them when the
//! service's errors do mean it is overloaded and no breaker sits below the limiter.
//!
//! # Example
//!
//! ```
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_limit::concurrency::{AimdConfig, ConcurrencyConfig, ConcurrencyLimitLayer};
//! use tower_prism_limit::concurrency::VegasConfig;
//! use tower_prism_limit::Error;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = ConcurrencyConfig::builder()
//!     .initial_limit(1)
//!     .min_limit(1)
//!     .max_limit(50)
//!     .algorithm(AimdConfig::default())
//!     .build()
//!     .expect("a valid config");
//! let layer = ConcurrencyLimitLayer::builder(config)
//!     .name("backend")
//!     .build()
//!     .expect("a valid config");
//! let limiter = layer.handle().clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n + 1) }));
//!
//! // One call holds the only permit, so a second one is turned away at once.
//! let first = svc.ready().await.unwrap().call(1);
//! let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
//! assert_eq!(
//!     err.downcast_ref::<Error>(),
//!     Some(&Error::ConcurrencyLimited { limit: 1 })
//! );
//! // The first finishes under full load, a healthy sample: AIMD raises the limit.
//! assert_eq!(first.await.unwrap(), 2);
//! assert_eq!(limiter.snapshot().limit, 2);
//! assert_eq!(limiter.snapshot().in_flight, 0);
//!
//! // The default rule: from a file with no `[algorithm]` table, or in code.
//! let default = ConcurrencyConfig::builder()
//!     .algorithm(VegasConfig::default())
//!     .build()
//!     .expect("a valid config");
//! assert_eq!(default, ConcurrencyConfig::default());
//! # }
//! ```
//!
//! Over the limit a request fails fast from its response future (never from `poll_ready`),
//! or waits up to `max_wait` for a permit (failing fast while `max_waiters` already wait). Acquiring a permit is one compare-and-swap on a
//! packed atomic and allocates nothing; the permit is returned when the call completes or
//! its future is dropped.

mod algorithm;
mod algorithm_config;
mod config;
mod config_builder;
mod future;
mod layer;
mod limiter;
mod permits;
mod service;
mod vegas;

pub use algorithm_config::{AimdConfig, GradientConfig, LimitAlgorithm, VegasConfig};
pub use config::ConcurrencyConfig;
pub use config_builder::ConcurrencyConfigBuilder;
pub use future::ResponseFuture;
pub use layer::{ConcurrencyLimitLayer, ConcurrencyLimitLayerBuilder};
pub use limiter::{ConcurrencyLimiter, ConcurrencySnapshot, Permit};
pub use service::ConcurrencyLimit;
