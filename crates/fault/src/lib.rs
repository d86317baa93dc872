//! Fault injection for [tower]: fail, abort, answer with an HTTP or gRPC status, or delay
//! a share of calls, to test how the stack above and the callers behave when an upstream
//! misbehaves (a "game day"), without touching the upstream.
//!
//! # Overview
//!
//! [`FaultLayer`] wraps a service in a [`Fault`] stage. Every clone of the layer and of
//! its services shares one [`FaultHandle`] ([`snapshot`](FaultHandle::snapshot),
//! [`reconfigure`](FaultHandle::reconfigure)). Per call, the stage draws:
//!
//! - at most one of: an injected error ([`Error::Injected`], rate `error`); an aborted
//!   connection ([`Error::Aborted`], whose source is an `io::Error` of kind
//!   `ConnectionReset`; rate `abort`); an HTTP status (`code`) or a gRPC one (`grpc_code`,
//!   a Trailers-Only answer) answered without calling the service ([`StatusFault`]).
//!   These rates add up to at most 1.
//! - independently, a delay before the call goes on ([`LatencyFault`]): fixed, uniform
//!   between two bounds, or lognormal by median and 99th percentile.
//!
//! A delayed call without another fault reaches the service after its delay; a call with
//! an error, abort or status never reaches it. `max_active_faults` caps the calls with a
//! fault at any one time (Envoy's): a call drawing one while as many are active (a delayed
//! call is, until its delay is over) gets none. Only calls that draw a fault count, with
//! one atomic add; the snapshot reports `active_faults` and `faults_overflow`. Injected
//! errors are `Err`s like any upstream's, so
//! [`DefaultClassifier`](tower_prism_core::DefaultClassifier) and
//! [`HttpClassifier`](tower_prism_core::HttpClassifier) count them as retryable failures;
//! an injected 503 or 429, or an injected gRPC `UNAVAILABLE`, is read as the real one
//! would be.
//!
//! A status fault needs to build the service's response type: give the layer builder an
//! [`InjectStatus`] ([`HttpStatus`] for `http::Response<B>` with `B: Default`;
//! [`EmptyHttpBody`] for `http::Response<B>` with any `B`, building the common body types
//! it knows and failing the call with [`Error::Injected`] for others; or a closure) with
//! [`FaultLayerBuilder::status_with`]. A layer without one ([`NoStatus`], the default)
//! refuses a config with a status fault, with a
//! [`ConfigError`](tower_prism_core::ConfigError) naming `status`. A gRPC status needs a
//! builder that says it ([`GrpcStatus`] for `http::Response<B>` with `B: Default`, or
//! your own [`InjectStatus::grpc_response`]), given with
//! [`FaultLayerBuilder::grpc_status_with`]; any other layer refuses a `grpc_code`, naming
//! `status.grpc_code`.
//!
//! [`Fault::pass_through`] is the stage switched off for good: the same type as an
//! engaged stage, costing a call one branch, for stacks whose stages are optional.
//!
//! Draws are deterministic for a `seed`: a seeded stage injects the same faults in the
//! same call order on every run, so a failing test replays. Each call takes one step of a
//! shared atomic counter, mixed into its draws: lock-free, with no allocation. A stage
//! switched off (`enabled = false`) or with every rate at zero costs a call one relaxed
//! atomic load and a branch. [`reconfigure`](FaultHandle::reconfigure) switches faults
//! on and off, or changes them, for the next call; each call reads one whole config,
//! never half of two.
//!
//! Metrics: `prism_fault_injected_total{name, reason}` with `reason` one of `error`,
//! `abort`, `status`, `latency` (see [`tower_prism_core::metrics::fault`]); each injected
//! fault also logs a `debug` event, and switching the stage on or off an `info` event.
//!
//! Delays sleep on tokio's timer, so `tokio::time::pause()` drives them in tests.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_fault::{Error, FaultConfig, FaultLayer, LatencyFault};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let config = FaultConfig::builder()
//!     .seed(7)
//!     .error(0.25)
//!     .latency(LatencyFault::fixed(0.5, Duration::from_millis(100)))
//!     .build()?;
//! let layer = FaultLayer::builder(config).name("payments").build()?;
//! let faults = layer.handle().clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|n: u32| async move { Ok::<_, tower::BoxError>(n * 2) }));
//!
//! let start = tokio::time::Instant::now();
//! let mut failed = 0;
//! for n in 0..1000 {
//!     match svc.ready().await?.call(n).await {
//!         Ok(answer) => assert_eq!(answer, n * 2),
//!         Err(e) => {
//!             assert!(matches!(e.downcast_ref::<Error>(), Some(Error::Injected)));
//!             failed += 1;
//!         }
//!     }
//! }
//! let snapshot = faults.snapshot();
//! assert_eq!(snapshot.injected_errors, failed);
//! assert!((200..300).contains(&failed), "about a quarter: {failed}");
//! // about half the calls waited 100 ms (on the paused clock)
//! assert_eq!(start.elapsed(), Duration::from_millis(100) * snapshot.injected_latency as u32);
//!
//! // the game day is over
//! faults.reconfigure(&FaultConfig::builder().enabled(false).build()?)?;
//! assert_eq!(svc.ready().await?.call(1).await?, 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! None: the crate has no optional features.
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod empty_body;
mod error;
mod faults;
mod future;
mod handle;
mod layer;
mod metrics;
mod plan;
mod seqlock;
mod service;
mod status;

pub use config::{FaultConfig, FaultConfigBuilder};
pub use empty_body::EmptyHttpBody;
pub use error::Error;
pub use faults::{LatencyFault, StatusFault, MAX_FAULT_LATENCY};
pub use future::ResponseFuture;
pub use handle::{FaultHandle, FaultSnapshot};
pub use layer::{FaultLayer, FaultLayerBuilder};
#[doc(hidden)]
pub use service::Drawn;
pub use service::Fault;
pub use status::{GrpcStatus, HttpStatus, InjectStatus, NoStatus};
