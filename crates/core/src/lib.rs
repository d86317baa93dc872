//! Shared pieces of [tower-prism]: what a result means, how components tell each other
//! about downstream health, where they read the time, metric names, and config validation.
//!
//! # Overview
//!
//! - [`Outcome`] and [`Classify`]: one decision, success, retryable failure or fatal, that
//!   the limiter, breaker, retry and balancer all use. [`DefaultClassifier`] counts every
//!   `Err` as a retryable failure; [`HttpClassifier`] reads the response's status;
//!   [`GrpcClassifier`] reads `grpc-status` (the [`grpc`] module: [`GrpcCode`],
//!   [`Pushback`]). Closures over `Result<&Res, &E>` classify too.
//! - [`HealthSignal`]: the breaker and the balancer publish outcomes and latencies to it;
//!   the adaptive limiters and the retry budget read it ([`HealthReader`]), lock-free.
//! - [`Clock`]: where a component reads the time; the default follows
//!   `tokio::time::pause()`, so tests drive every timeout.
//! - [`RequestDeadline`]: the time a request must be answered by, which a deadline stage
//!   hands to the stages below it.
//! - [`ConfigError`]: an invalid config value, named by its dotted field path.
//! - [`metrics`]: every metric and label name, and [`metrics::describe`].
//!
//! Most users reach these through the `tower-prism` facade, which re-exports them at its
//! root.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_prism_core::{Classify, HealthSignal, HttpClassifier, Outcome};
//!
//! // What does a 503 mean? A failure worth retrying.
//! let response = http::Response::builder().status(503).body(()).unwrap();
//! let outcome = Classify::<_, std::io::Error>::classify(&HttpClassifier, Ok(&response));
//! assert_eq!(outcome, Outcome::Failure { retryable: true });
//!
//! // A breaker publishes it; an adaptive limiter reads it.
//! let health = HealthSignal::new();
//! let mut limiter_view = health.subscribe();
//! health.record(outcome, Duration::from_millis(40));
//! assert_eq!(limiter_view.read().failure_rate(), Some(1.0));
//! ```
//!
//! # Feature flags
//!
//! None.
//!
//! [tower-prism]: https://docs.rs/tower-prism

#![cfg_attr(docsrs, feature(doc_cfg))]

// The modules stay public although their items are re-exported at the root: rustdoc links
// from another crate to an item only at its definition path, so with private modules every
// link from the component crates' docs to `Outcome`, `HealthSignal`... would render as text.
pub mod clock;
pub mod config;
pub mod deadline;
pub mod grpc;
pub mod health;
#[doc(hidden)]
pub mod internal;
pub mod metrics;
pub mod outcome;
#[doc(hidden)]
pub mod sync;

pub use clock::{Clock, Moment, TimeSource};
pub use config::ConfigError;
pub use deadline::RequestDeadline;
pub use grpc::{
    grpc_status, GrpcClassifier, GrpcCode, GrpcCodes, Pushback, UnknownGrpcCode, GRPC_MESSAGE,
    GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS, MAX_PUSHBACK_LEN,
};
pub use health::{HealthReader, HealthSignal, HealthStats};
pub use outcome::{Classify, DefaultClassifier, HttpClassifier, Outcome};

/// The error type of every tower-prism service, as of tower's own middleware: the inner
/// service's error or a stage's rejection, boxed. Downcast it to the concrete error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
