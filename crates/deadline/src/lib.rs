//! A deadline for [tower] services: a total timeout over everything below the stage
//! (circuit breaker, every retry attempt and backoff, balancing), joined with the deadline
//! a request brings, and written into the outgoing request for the next hop.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_core::RequestDeadline;
//! use tower_prism_deadline::{DeadlineConfig, DeadlineLayer, Error, ExpiryReason};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let config = DeadlineConfig::builder().timeout(Duration::from_secs(1)).build()?;
//! let layer = DeadlineLayer::builder(config).name("payments").build()?;
//! let handle = layer.handle().clone();
//!
//! // an upstream that answers after `delay_ms`, and sees the deadline while it is called
//! let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(|delay_ms: u64| {
//!     let deadline = RequestDeadline::current().expect("set by the stage above");
//!     async move {
//!         tokio::time::sleep(Duration::from_millis(delay_ms)).await;
//!         Ok::<_, tower::BoxError>(deadline.remaining())
//!     }
//! }));
//!
//! let left = svc.ready().await?.call(300).await?;
//! assert_eq!(left, Duration::from_millis(700));
//!
//! let err = svc.ready().await?.call(5_000).await.unwrap_err();
//! let Some(Error::Expired { after, reason }) = err.downcast_ref::<Error>() else {
//!     panic!("expected an expiry, got {err}");
//! };
//! assert_eq!((*after, *reason), (Duration::from_secs(1), ExpiryReason::Policy));
//! assert_eq!(handle.snapshot().expired, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Overview
//!
//! [`DeadlineLayer`] wraps a service in a [`Deadline`]. A call's deadline is the earliest
//! of:
//! - the policy's [`timeout`](DeadlineConfig::timeout) from now;
//! - the deadline the request carries, as its [`Carrier`] reads it: [`AnyRequest`] (the
//!   default) reads nothing; [`HttpRequest`] reads an `http::Request`'s
//!   [`RequestDeadline`](tower_prism_core::RequestDeadline) extension and the configured
//!   [`header`](DeadlineConfig::header) (`grpc-timeout`'s syntax, milliseconds or seconds:
//!   [`HeaderFormat`]);
//! - the deadline of a stage above, [`RequestDeadline::current`](tower_prism_core::RequestDeadline::current).
//!
//! With none, the call passes through untouched, without a timer. A request whose
//! deadline has passed already fails at once with [`Error::Expired`] and never reaches the
//! inner service. Otherwise the deadline is written into the request (the extension, and
//! with [`propagate`](DeadlineConfig::propagate) the header with the time left, rounded
//! down), made current while the stages below are called (a retry stage reads it to start
//! no attempt or backoff that cannot finish in time), and raced against the inner call:
//! if it passes first, the inner call is dropped and the call fails with
//! [`Error::Expired`], saying which deadline it was ([`ExpiryReason`]). Inner errors pass
//! through as [`tower_prism_core::BoxError`].
//!
//! Below a retry stage, a [`PropagateDeadlineLayer`]
//! ([`DeadlineLayer::propagate_layer`]) writes the time left into each attempt as it is
//! sent.
//!
//! Every setting is in [`DeadlineConfig`] (TOML with humantime durations, validated; an
//! error names the field). The shared [`DeadlineHandle`] gives a
//! [`snapshot`](DeadlineHandle::snapshot) and [`reconfigure`](DeadlineHandle::reconfigure)
//! (the timeout and `propagate` change live; the header is fixed when the stage is built).
//! Expiries are counted in `prism_deadline_expired_total{name, reason}` and logged as
//! `tracing` debug events.
//!
//! A call with a deadline costs one clock read and a reference count; its timer, held
//! inline in the response future (no allocation), is armed only if the inner call does not
//! answer at its first poll. A call with no deadline costs a few branches and no clock
//! read. [`Deadline::pass_through`] and [`PropagateDeadline::pass_through`] are the
//! stages switched off for good: the same types as engaged stages, costing a call one
//! branch (no ambient deadline, nothing read or written), for stacks whose stages are
//! optional.
//!
//! # Feature flags
//!
//! None: the crate has no optional features.
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

mod carrier;
mod config;
mod decide;
mod error;
mod future;
mod handle;
mod header;
mod layer;
mod metrics;
mod propagate;
mod service;

pub use carrier::{AnyRequest, Carrier, HttpRequest};
pub use config::{DeadlineConfig, DeadlineConfigBuilder, HeaderFormat, MAX_DEADLINE_TIMEOUT};
pub use error::{Error, ExpiryReason};
pub use future::ResponseFuture;
pub use handle::{DeadlineHandle, DeadlineSnapshot};
pub use header::HeaderSpec;
pub use layer::{DeadlineLayer, DeadlineLayerBuilder};
pub use propagate::{PropagateDeadline, PropagateDeadlineLayer};
pub use service::Deadline;
