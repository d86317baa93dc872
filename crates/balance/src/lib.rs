//! Load balancing for [tower]: power of two choices on peak-EWMA latency (the default),
//! least requests, round robin, smooth weighted round robin and consistent (rendezvous)
//! hashing over a changing set of endpoint services, with passive outlier ejection and
//! optional active health checks. Part of tower-prism.
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{service_fn, Service, ServiceExt};
//! use tower_prism_balance::{Balance, BalanceConfig, Error, Strategy};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! let endpoint = |id: u32| service_fn(move |req: u32| async move { Ok::<_, Infallible>((id, req)) });
//! let mut balance = Balance::builder()
//!     .name("backends")
//!     .strategy(Strategy::RoundRobin)
//!     .endpoint("a", endpoint(1))
//!     .endpoint("b", endpoint(2))
//!     .build()?;
//! let first = balance.ready().await?.call(7).await?;
//! let second = balance.ready().await?.call(7).await?;
//! assert_ne!(first.0, second.0);
//!
//! // endpoints come and go at runtime, through a handle
//! let handle = balance.handle();
//! handle.remove(&"a");
//! handle.remove(&"b");
//! let err = balance.ready().await?.call(7).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<Error>(), Some(&Error::NoHealthyEndpoint { endpoints: 0 }));
//! # let _ = BalanceConfig::default();
//! # Ok(()) }
//! ```
//!
//! Modules `p2c`, `ewma`, `round_robin`, `weighted`, `hash`, `outlier` and `health_check`
//! hold the algorithms with no tower types in them.
//!
//! # Metrics: one `endpoint` label value per slot, not per address
//!
//! Per-endpoint series (`prism_balance_{requests_total, failures_total, in_flight,
//! latency_ewma_seconds, ejections_total, endpoint_healthy}`) are labelled
//! `endpoint="<slot>"`: each endpoint takes the lowest free metrics slot when it joins and
//! frees it when it leaves, and the next endpoint to join reuses it. A `metrics` recorder
//! keeps every label set it ever saw (the `metrics` crate cannot delete a series), so address
//! labels would leave six series behind for every address that ever came and went (12,000
//! after 2,000 endpoints of a rolling deployment). With slots a balancer exports at most
//! 6 x (the most endpoints it held at once) + 2 series, however many endpoints churn through
//! it. Which address holds which slot is in [`BalanceHandle::snapshot`]
//! ([`EndpointSnapshot::slot`]) and in the `tracing` events on add, remove, ejection and
//! restoration (`endpoint added: slot 3 = 10.0.0.5:80`).
//!
//! When an endpoint leaves, its slot's gauges drop to 0 and its requests still in flight
//! stop writing to the slot; the next endpoint in the slot starts from fresh gauges (none in
//! flight, healthy, latency `default_rtt`). The slot's counters carry on, since a Prometheus
//! counter never decreases: a `rate()` over them is per slot, across its occupants.
//!
//! # Bounds
//!
//! A balancer holds at most [`MAX_ENDPOINTS`] endpoints ([`BalanceHandle::add`] returns a
//! `ConfigError` beyond it, and a discovery stream's extra endpoints are refused with a
//! warning). Every duration and count of [`BalanceConfig`] has an upper bound
//! ([`MAX_DEFAULT_RTT`], [`MAX_INTERVAL`], [`MAX_EJECTION_TIME`], [`MAX_PROBE_TIMEOUT`],
//! [`MAX_PROBE_THRESHOLD`], [`MAX_COUNT`]) and a typed error naming the field beyond it.
//! Endpoint keys are kept as text for events only up to [`MAX_LABEL_CHARS`]; consistent
//! hashing stores no request key (the `key_fn` returns a `u64`).
//!
//! # Faults
//!
//! - A call to an endpoint that never answers waits as long as its caller does: the
//!   balancer sets no timeout. The caller's deadline (tower-prism's deadline stage or any
//!   timeout) bounds it by dropping the response future, which releases the call's
//!   in-flight count at once. Until then the call counts as in flight, so P2C and least
//!   requests send new calls elsewhere; an answer that comes an hour late raises the
//!   endpoint's latency estimate to an hour and P2C avoids it.
//! - An endpoint that panics in `call` or in its future, and a classifier or `key_fn` that
//!   panics, lose that one call (the panic reaches the caller); nothing stays counted in
//!   flight, and the balancer's locks, if poisoned, are used as they were.
//! - A health probe that panics or hangs past `health_check.timeout` is a failed probe; the
//!   checks go on.
//! - Time that jumps by days ends ejections that were due, decays latency estimates, and
//!   runs the next health-check round; nothing overflows (ejection times saturate).
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod config;
mod endpoint;
mod endpoint_metrics;
mod error;
mod future;
mod gate;
mod handle;
mod service;
mod slots;

pub mod ewma;
pub mod hash;
pub mod health_check;
pub mod outlier;
pub mod p2c;
pub mod round_robin;
pub mod weighted;

#[cfg(all(feature = "http", not(loom)))]
mod http;

pub use builder::BalanceBuilder;
pub use config::{
    BalanceConfig, HealthCheckConfig, OutlierConfig, Strategy, MAX_COUNT, MAX_DEFAULT_RTT,
    MAX_EJECTION_TIME, MAX_INTERVAL, MAX_PROBE_THRESHOLD, MAX_PROBE_TIMEOUT,
};
pub use error::Error;
pub use future::ResponseFuture;
pub use handle::{
    BalanceHandle, BalanceSnapshot, EndpointSnapshot, MAX_ENDPOINTS, MAX_LABEL_CHARS,
};
pub use hash::hash_key;
#[cfg(all(feature = "http", not(loom)))]
pub use http::{endpoints_from_uris, UriEndpoint};
pub use service::Balance;
