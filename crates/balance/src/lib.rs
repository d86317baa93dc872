//! Load balancing for [tower]: spread requests over a changing set of endpoint services,
//! keep slow and failing endpoints out of rotation, and see what every endpoint is doing.
//! Part of [tower-prism](https://docs.rs/tower-prism).
//!
//! # Overview
//!
//! A [`Balance`] is a tower [`Service`](tower_service::Service) over endpoints keyed by a
//! `K` (an address, a name). Every clone shares the endpoint set, the statistics and the
//! health state, so it can be cloned per request (as axum does) with no `Buffer`. It is
//! made in one of two ways:
//!
//! - [`Balance::new`]`(config)`, the plain way: an empty balancer running a
//!   [`BalanceConfig`] (read from a file or built with [`BalanceConfig::builder`]);
//! - [`Balance::builder`], for what a file cannot say: a [`name`](BalanceBuilder::name) for
//!   metrics and events, a [`classify`](BalanceBuilder::classify)er, a shared
//!   [`health`](BalanceBuilder::health) signal, a consistent-hashing
//!   [`key_fn`](BalanceBuilder::key_fn), an active [health probe](BalanceBuilder::health_check)
//!   and the first endpoints.
//!
//! [`Balance::from_discover`] takes its endpoints from a tower
//! [`Discover`](https://docs.rs/tower/latest/tower/discover/trait.Discover.html) stream instead. [`Balance::handle`] gives the
//! shared [`BalanceHandle`]: add and remove endpoints, change weights, read a
//! [`BalanceSnapshot`], and [`reconfigure`](BalanceHandle::reconfigure) the running balancer
//! (all or nothing). [`DnsDiscovery`] keeps the endpoints in step with a DNS name.
//!
//! The balancer's own failures are an [`Error`], returned boxed; endpoint errors pass
//! through unchanged.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{service_fn, Service, ServiceExt};
//! use tower_prism_balance::{Balance, BalanceConfig, Error, Strategy};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! let endpoint = |id: u32| service_fn(move |req: u32| async move { Ok::<_, Infallible>((id, req)) });
//! let config = BalanceConfig::builder()
//!     .strategy(Strategy::RoundRobin)
//!     .build()?;
//! let mut balance = Balance::builder()
//!     .name("backends")
//!     .config(config)
//!     .endpoint("a", endpoint(1))
//!     .endpoint("b", endpoint(2))
//!     .build()?;
//! let first = balance.ready().await?.call(7).await?;
//! let second = balance.ready().await?.call(7).await?;
//! assert_ne!(first.0, second.0);
//!
//! // endpoints come and go at runtime, through the shared handle
//! let handle = balance.handle().clone();
//! assert_eq!(handle.name(), "backends");
//! assert_eq!(handle.snapshot().healthy(), 2);
//! handle.remove(&"a");
//! handle.remove(&"b");
//! let err = balance.ready().await?.call(7).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<Error>(), Some(&Error::NoHealthyEndpoint { endpoints: 0 }));
//! # Ok(()) }
//! ```
//!
//! # Strategies
//!
//! [`Strategy`] (the config's `strategy`) chooses the endpoint:
//!
//! - `p2c_peak_ewma` (the default): power of two choices on each endpoint's peak-EWMA
//!   latency times its requests in flight, as Finagle and linkerd do;
//! - `least_requests`: the endpoint with the fewest requests in flight; over endpoints
//!   whose weights differ, Envoy's weighted least request: they share the picks in
//!   proportion to `weight / (in_flight + 1)^active_request_bias` (the bias 1 by default);
//! - `round_robin`: each endpoint in turn;
//! - `weighted_round_robin`: smooth weighted round robin (nginx's) on the weights given with
//!   [`BalanceBuilder::weighted_endpoint`] or [`BalanceHandle::add_weighted`];
//! - `consistent_hash`: rendezvous hashing on a `u64` key from the request
//!   ([`BalanceBuilder::key_fn`]; [`hash_key`] hashes any `Hash` value stably). When an
//!   endpoint leaves, only its keys move; endpoints share the keys in proportion to their
//!   weights.
//!
//! `poll_ready` picks among the healthy endpoints and skips one that is not ready rather
//! than wait on it. When fewer than `healthy_panic_threshold` (default 50 %) of the
//! endpoints are in rotation, it picks among all of them, healthy or not (Envoy's panic
//! mode: a health probe gone wrong, or most of an upstream failing at once, neither fails
//! every call nor piles the load on the few left); with the threshold at 0 and no healthy
//! endpoint at all, the call fails at once with [`Error::NoHealthyEndpoint`].
//!
//! # Outlier ejection and health checks
//!
//! Passive health ([`OutlierConfig`], on by default, as Envoy's `outlier_detection`): an
//! endpoint is ejected after `consecutive_failures` failures in a row, when its success
//! rate over `interval` falls below `success_rate_threshold` (a fixed threshold, as Envoy's
//! `failure_percentage` rule), or when it falls `success_rate_stdev_factor` (1.9 by
//! default) standard deviations below the mean of the endpoints' (Envoy's statistical
//! `success_rate` rule, on by default as there, over at least `success_rate_minimum_hosts`
//! endpoints with `success_rate_request_volume` calls each, judged for all of them at once
//! every `interval`). The n-th ejection in a row lasts n times `base_ejection_time`,
//! capped by `max_ejection_time` (n goes down by one for every `interval` the endpoint
//! then spends in rotation, as Envoy's multiplier), and at most `max_ejection_percent` of
//! the endpoints are out at once. What counts as a failure is the classifier's call
//! ([`BalanceBuilder::classify`]; by default, an `Err`).
//!
//! Active health ([`HealthCheckConfig`]) runs only with a probe given to
//! [`BalanceBuilder::health_check`]: a round at once, then every `interval`, one probe per
//! endpoint; an endpoint leaves rotation after `unhealthy_threshold` failed probes in a row
//! and comes back after `healthy_threshold` passing ones. As in Envoy, an endpoint (at the
//! start, or added later) waits out of rotation for its first probe, which runs at once and
//! decides alone: a dead endpoint never gets a call. The interval counts from the end of the
//! last round; a [reload](BalanceHandle::reconfigure) applies a new one at once.
//!
//! # Endpoints from DNS
//!
//! [`DnsDiscovery`] makes a balancer follow a DNS name (a Kubernetes headless service, or
//! any name with several A/AAAA records): every [`DnsConfig::interval`] it resolves the name
//! and adds the new addresses (each made into an endpoint by a function of its
//! `SocketAddr`) and removes the gone ones through the [`BalanceHandle`]; requests in
//! flight to a removed endpoint complete. A failed, timed-out or empty resolution keeps
//! the last good set. The resolver is the [`Resolve`] trait, [`TokioResolver`] (the system
//! resolver) by default.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use tower::service_fn;
//! use tower_prism_balance::{Balance, BalanceConfig, DnsConfig, DnsDiscovery};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! // an endpoint per address: a hyper client bound to it in real life (see
//! // examples/dns_hyper.rs, with `UriEndpoint`)
//! let endpoint = |addr: SocketAddr| service_fn(move |req: u32| async move { Ok::<_, Infallible>((addr, req)) });
//! let balance: Balance<_, _, u32> = Balance::new(BalanceConfig::default())?;
//! let config: DnsConfig = toml::from_str(r#"
//!     host = "backend.default.svc.cluster.local"
//!     port = 8080
//!     interval = "5s"
//! "#)?;
//! // keep the handle: dropping it stops the refresh
//! let dns = DnsDiscovery::new(config, endpoint).spawn(balance.handle())?;
//! # drop(dns);
//! # Ok(()) }
//! ```
//!
//! # Metrics: one `endpoint` label value per slot, not per address
//!
//! Per-endpoint series (`prism_balance_{requests_total, failures_total, in_flight,
//! latency_ewma_seconds, ejections_total, endpoint_healthy}`) are labelled
//! `endpoint="<slot>"`: each endpoint takes the lowest free metrics slot when it joins and
//! frees it when it leaves, and the next endpoint to join reuses it. A `metrics` recorder
//! keeps every label set it ever saw (the `metrics` crate cannot delete a series), so address
//! labels would leave six series behind for every address that ever came and went. With
//! slots a balancer exports at most 6 x (the most endpoints it held at once) + 2 series,
//! however many endpoints churn through it. Which address holds which slot is in
//! [`BalanceHandle::snapshot`] ([`EndpointSnapshot::slot`]) and in the `tracing` events on
//! add, remove, ejection and restoration (`endpoint added: slot 3 = 10.0.0.5:80`).
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
//!   checks go on, and every other endpoint's result is recorded as its probe answers.
//! - An endpoint ejected and failing its health checks too, or removed while its probe's
//!   result is recorded, counts once in (and leaves once) the count of endpoints out of
//!   rotation that the healthy gauge and panic mode read.
//! - A DNS answer is applied as one change of the set: even at [`MAX_ENDPOINTS`] an answer
//!   whose every address changed replaces the set whole; an answer over the cap is followed
//!   up to it ([`DnsSnapshot::over_capacity`] counts the rest).
//! - Time that jumps by days ends ejections that were due, decays latency estimates, and
//!   runs the next health-check round; nothing overflows (ejection times saturate).
//!
//! # Feature flags
//!
//! - `http` (on by default): [`endpoints_from_uris`] and [`UriEndpoint`], endpoints that
//!   are hyper-util legacy clients, one per upstream URI.
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod config;
mod config_builder;
mod discover;
mod endpoint;
mod endpoint_metrics;
mod error;
mod future;
mod gate;
mod handle;
mod probe;
mod service;
mod slots;
mod snapshot;

// the algorithms, with no tower types in them
mod ewma;
mod hash;
mod health_check;
mod least_requests;
mod outlier;
mod p2c;
mod peers;
mod rotation;
mod round_robin;
mod weighted;

#[cfg(all(feature = "http", not(loom)))]
mod http;

// tokio has no `net` (lookup_host) under --cfg loom
#[cfg(not(loom))]
mod dns;

pub use builder::BalanceBuilder;
pub use config::{
    BalanceConfig, HealthCheckConfig, OutlierConfig, Strategy, MAX_COUNT, MAX_DEFAULT_RTT,
    MAX_EJECTION_TIME, MAX_INTERVAL, MAX_PROBE_THRESHOLD, MAX_PROBE_TIMEOUT,
};
pub use config_builder::{BalanceConfigBuilder, HealthCheckConfigBuilder, OutlierConfigBuilder};
#[cfg(not(loom))]
pub use dns::{
    DnsConfig, DnsConfigBuilder, DnsDiscovery, DnsHandle, DnsSnapshot, Resolve, TokioResolver,
    MIN_DNS_INTERVAL,
};
pub use error::Error;
pub use future::ResponseFuture;
pub use handle::{BalanceHandle, WeakBalanceHandle, MAX_ENDPOINTS, MAX_LABEL_CHARS};
pub use hash::hash_key;
#[cfg(all(feature = "http", not(loom)))]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::{endpoints_from_uris, UriEndpoint};
pub use service::{Balance, READINESS_GRACE};
pub use snapshot::{BalanceSnapshot, EndpointSnapshot};
