//! Reliability middleware for [tower]: rate limiting, concurrency limiting, deadlines,
//! circuit breaking, retries and hedging, load balancing and fault injection, stacked in
//! one layer, with a fallback answer above it.
//!
//! # Overview
//!
//! A [`ReliabilityLayer`] is one *policy*: the stages you configure, always in the same
//! order, over any tower [`Service`](tower_service::Service). The services it makes are
//! [`Reliability`]s; every clone of the layer and of its services shares one limiter, one
//! breaker, one retry budget and one balancer, so axum can clone a service per request and
//! no `Buffer` is needed. Policies come from code ([`ReliabilityLayer::builder`]) or from a
//! TOML file of named policies ([`ReliabilityConfig`]), and a file can be reloaded into
//! running layers, all or nothing ([`Policies`]).
//!
//! Every stage returns a [`BoxError`], as tower's own middleware does, so the stack composes
//! with any `ServiceBuilder`; [`Error::from_box`] classifies one into an [`ErrorKind`]
//! (rate limited, circuit open, retries exhausted, timeout...), and [`HttpErrorLayer`]
//! answers it with an HTTP response (429 or 503 with `Retry-After`, 502, 504).
//!
//! # Example
//!
//! ```
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_prism::{Error, ErrorKind, ReliabilityConfig, ReliabilityLayer, ServiceBuilderExt};
//!
//! # tokio_test::block_on(async {
//! let config = ReliabilityConfig::from_toml(r#"
//!     [policy.payments.rate_limit]
//!     rate = 2
//!     period = "1m"
//!
//!     [policy.payments.circuit_breaker]
//!     [policy.payments.retry]
//! "#)?;
//! let policy = ReliabilityLayer::from_config(&config, "payments")?;
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
//! # A server
//!
//! With the [`HttpServer`] profile, results are classified by status, and
//! [`http_errors`](ServiceBuilderExt::http_errors) turns rejections into responses, so an
//! axum route takes the stack as it is, with no `HandleErrorLayer`:
//!
//! ```
//! use axum::{body::Body, routing::get, Router};
//! use http::{Request, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_prism::{HttpServer, ReliabilityConfig, ReliabilityLayer, ServiceBuilderExt};
//!
//! # tokio_test::block_on(async {
//! let config = ReliabilityConfig::from_toml(r#"
//!     [policy.payments.rate_limit]
//!     rate = 1
//!     period = "1m"
//! "#)?; // or ReliabilityConfig::from_file("reliability.toml")
//! let payments = ReliabilityLayer::from_config_as(&config, "payments", HttpServer)?;
//! let app: Router = Router::new().route(
//!     "/pay",
//!     get(|| async { "paid" })
//!         .route_layer(ServiceBuilder::new().http_errors().reliability(payments)),
//! );
//!
//! let pay = || Request::get("/pay").body(Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(pay()).await?.status(), StatusCode::OK);
//! let shed = app.oneshot(pay()).await?;
//! assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(shed.headers().contains_key("retry-after"));
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! A server cannot replay what it received, so a server policy has no retry stage: the
//! builder refuses one.
//!
//! # A client
//!
//! With the [`Http`] profile ([`ReliabilityLayerBuilder::http`]), 5xx, 429 and 408
//! responses are failures for the breaker and the balancer, `Retry-After` is honoured, and
//! idempotent requests are retried when their body can be replayed (see
//! [`retry`]). Here two endpoints are balanced, one of them failing:
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, BoxError, ServiceExt};
//! use tower_prism::retry::{replayable, ReplayBody};
//! use tower_prism::ReliabilityLayer;
//!
//! # tokio_test::block_on(async {
//! let policy = ReliabilityLayer::builder()
//!     .http()
//!     .name("inventory")
//!     .build()?;
//! let endpoint = |status: u16| {
//!     service_fn(move |_req: Request<ReplayBody<String>>| async move {
//!         Ok::<_, BoxError>(Response::builder().status(status).body(String::new())?)
//!     })
//! };
//! let client = policy.layer_endpoints([("a", endpoint(200)), ("b", endpoint(503))])?;
//!
//! // The body is kept (up to 64 KiB) so that a retry stage could send the request again.
//! let request = replayable(Request::new("GET /items".to_owned()), 64 * 1024);
//! let response = client.oneshot(request).await?;
//! assert!([StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(&response.status()));
//! # Ok::<_, BoxError>(())
//! # }).unwrap();
//! ```
//!
//! # The stack's order, and why
//!
//! `(fallback) -> rate limit -> concurrency limit -> deadline -> circuit breaker -> retry ->
//! balance -> fault injection -> your service`. Every stage is optional; the order is not
//! configurable. The fallback is a layer of its own ([`ReliabilityLayer::fallback`]), so it
//! answers for every stage below it.
//!
//! - The limiters come first: excess load is shed before it costs anything below.
//! - The deadline is below the limits (time spent refused is not the upstream's) and above
//!   the breaker and retry: one total timeout covers every attempt and backoff, and retry
//!   never starts an attempt the deadline cannot fit.
//! - The breaker sees one logical call, after retries: it protects the upstream as a whole
//!   and fails fast while open, so retries never hammer a dead upstream.
//! - Retry sits above the balancer, so a retried request can go to another, healthy
//!   endpoint.
//! - The balancer's per-endpoint outlier ejection handles one bad endpoint without opening
//!   the breaker.
//! - Fault injection is innermost, around each endpoint, so the stages above meet an
//!   injected fault exactly as they would a real one.
//!
//! The stages share one [`HealthSignal`] ([`ReliabilityLayer::health`]): the breaker and
//! the balancer publish to it, the adaptive limiters and the retry budget read it.
//!
//! # Profiles
//!
//! A [`Profile`] says what the calls are: how the stages classify results ([`Classify`]),
//! how the retry stage replays requests, where the deadline stage finds a request's
//! deadline and how the fault stage answers with a status. [`Generic`] (the default: `Err` is a retryable
//! failure, requests are cloned), [`Http`] (a client), [`HttpServer`], [`Grpc`] and
//! [`GrpcServer`] (tonic), or your own classifier with
//! [`ReliabilityLayerBuilder::classify`].
//!
//! # gRPC
//!
//! With the [`Grpc`] profile a tonic client's calls are classified by `grpc-status`
//! ([`GrpcClassifier`]: `UNAVAILABLE` and `RESOURCE_EXHAUSTED` retried, more with
//! [`Grpc::retry_on`]), `grpc-retry-pushback-ms` is honoured (negative: not retried), and
//! request bodies are replayed when they came through a
//! [`BoxedReplayLayer`](retry::BoxedReplayLayer) (tonic's channel takes only its own body
//! type). On a server, [`GrpcServer`] and [`grpc_errors`](ServiceBuilderExt::grpc_errors)
//! answer rejections as gRPC statuses (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`,
//! `DEADLINE_EXCEEDED`, with pushback). A `[deadline]` table with `header =
//! "grpc-timeout"` reads and writes gRPC's deadline header. The whole client:
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_prism::retry::{Backoff, BoxedReplayLayer, RetryConfig};
//! use tower_prism::{GrpcCode, ReliabilityLayer, ServiceBuilderExt};
//!
//! # tokio_test::block_on(async {
//! let policy = ReliabilityLayer::builder()
//!     .grpc()
//!     .name("echo")
//!     .retry(RetryConfig::builder().backoff(Backoff::fixed(Duration::from_millis(1))).build()?)
//!     .build()?;
//! // stands for a `tonic::transport::Channel`: UNAVAILABLE once, then OK
//! let calls = std::sync::atomic::AtomicU32::new(0);
//! let channel = service_fn(|_: http::Request<tonic::body::Body>| {
//!     let status = match calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
//!         0 => GrpcCode::Unavailable,
//!         _ => GrpcCode::Ok,
//!     };
//!     let answer = http::Response::builder()
//!         .header("grpc-status", status.header_value())
//!         .body(tonic::body::Body::empty());
//!     async move { Ok::<_, BoxError>(answer?) }
//! });
//! let client = ServiceBuilder::new()
//!     .layer(BoxedReplayLayer::new(64 * 1024, tonic::body::Body::new))
//!     .reliability(policy)
//!     .service(channel); // then `tonic::client::Grpc::new(client)`, or a generated client
//! let response = client.oneshot(http::Request::new(tonic::body::Body::empty())).await?;
//! assert_eq!(response.headers()["grpc-status"], "0");
//! # Ok::<_, BoxError>(())
//! # }).unwrap();
//! ```
//!
//! A gRPC server sends a status in trailers after a message; the stages classify a call
//! when its response head arrives, so such a call counts as a success (see
//! [`GrpcClassifier`]). Errors sent before any message, as tonic sends them, are seen.
//! `examples/grpc` runs a tonic server and client with both profiles.
//!
//! # Feature flags
//!
//! - `redis` (off by default): a rate limit shared by every instance through Redis, the
//!   `redis` module of [`limit`]; the stack maps its fail-closed rejection to
//!   [`ErrorKind::LimiterUnavailable`].
//! - `watch` (off by default): a policy file that reloads itself when it changes, or on
//!   SIGHUP (`Policies::watch`), with the `notify` crate.
//!
//! # Crates
//!
//! Each stage is its own crate, re-exported here, usable alone:
//! [`limit`] (rate and concurrency limits), [`breaker`] (circuit breaker), [`retry`]
//! (retries, hedging, backoff, budget, replayable bodies), [`balance`] (load balancing,
//! outlier ejection), [`deadline`] (total timeout, request deadlines, propagation) and
//! [`fault`] (fault injection). [`fallback`] (answers for chosen error kinds) is a module
//! of this crate. The shared pieces ([`Outcome`], [`Classify`], [`HealthSignal`], [`Clock`],
//! [`ConfigError`], [`metrics`]) come from tower-prism-core and are re-exported at the root.
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

mod answering;
mod builder;
mod components;
mod config;
mod config_error;
mod direct;
mod error;
mod ext;
pub mod fallback;
mod future;
mod grpc;
mod http;
mod layer;
mod names;
mod parse_error;
mod policies;
mod profile;
mod reload;
mod retry_kind;
mod service;
mod snapshot;
mod stack;
mod stages;
#[cfg(feature = "watch")]
mod watch;

pub use builder::ReliabilityLayerBuilder;
pub use config::{PolicyConfig, PolicyConfigBuilder, ReliabilityConfig};
pub use config_error::ConfigFileError;
pub use error::{retry_after_hint, Error, ErrorKind};
pub use ext::{protect, Protected, ServiceBuilderExt};
pub use future::ResponseFuture;
pub use grpc::{GrpcErrorLayer, GrpcErrors, GrpcErrorsFuture};
pub use http::{HttpErrorLayer, HttpErrors, HttpErrorsFuture};
pub use layer::{Balanced, ReliabilityLayer};
pub use names::MAX_POLICY_NAME;
pub use parse_error::{ParseError, MAX_PARSE_MESSAGE};
pub use policies::Policies;
pub use profile::{Classified, Generic, Grpc, GrpcServer, Http, HttpServer, Profile, SendOnce};
pub use retry_kind::{NoRetries, Retries, RetryKind};
pub use service::Reliability;
pub use snapshot::Snapshot;
#[cfg(feature = "watch")]
#[cfg_attr(docsrs, doc(cfg(feature = "watch")))]
pub use watch::{ConfigWatcher, ConfigWatcherBuilder, WatchError};

pub use tower_prism_core::{
    metrics, BoxError, Classify, Clock, ConfigError, DefaultClassifier, GrpcClassifier, GrpcCode,
    GrpcCodes, HealthReader, HealthSignal, HealthStats, HttpClassifier, Outcome, RequestDeadline,
};

/// Load balancing: P2C, round robin, weighted, consistent hash; outlier ejection.
pub use tower_prism_balance as balance;
/// The circuit breaker.
pub use tower_prism_breaker as breaker;
/// Deadlines: a total timeout, the request's own deadline, propagation to the next hop.
pub use tower_prism_deadline as deadline;
/// Fault injection: errors, aborted connections, statuses and latency, seedable.
pub use tower_prism_fault as fault;
/// Rate limits (local, keyed, Redis) and the adaptive concurrency limit.
pub use tower_prism_limit as limit;
/// Retries: backoff, retry budget, replayable HTTP bodies.
pub use tower_prism_retry as retry;

/// The README's Rust examples, compiled and run as doctests: every name they use is
/// defined in them, and the behaviour they claim is asserted.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
