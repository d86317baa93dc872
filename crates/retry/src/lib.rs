//! Retries for [tower]: backoff schedules with jitter, a retry budget shared by every
//! clone, outcome classification from `tower-prism-core`, `Retry-After` hints and
//! replayable HTTP request bodies.
//!
//! # Overview
//!
//! The retry stage follows the shape every tower-prism component has:
//!
//! - [`RetryConfig`]: what a config file can say (attempts, [`Backoff`], deadlines,
//!   `Retry-After` bounds, the [`BudgetConfig`], [`HedgeConfig`]); serde, validated, with
//!   a [builder](RetryConfig::builder).
//! - [`RetryLayer`]: [`RetryLayer::from_config`], or [`RetryLayer::builder`] for what
//!   only code can say: a `name`, how to `classify` results, how to copy requests
//!   ([`clone_request`](RetryLayerBuilder::clone_request)), where hints come from, and
//!   [`http`](RetryLayerBuilder::http) for HTTP clients.
//! - [`Retry`]: the service, with its [`ResponseFuture`].
//! - [`RetryHandle`]: the state every service of a layer shares, reached by
//!   [`RetryLayer::handle`] or [`Retry::handle`]: `name()`, `snapshot()` (a
//!   [`RetrySnapshot`]), `config()`, `reconfigure()` and the [`RetryBudget`].
//! - [`Error`]: why a retried call failed, inside the `BoxError` the service returns.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_retry::{Backoff, Error, RetryConfig, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = RetryConfig::builder()
//!     .max_attempts(3)
//!     .backoff(Backoff::fixed(Duration::from_millis(1)))
//!     .build()
//!     .expect("a valid config");
//! let layer = RetryLayer::builder(config).name("example").build().unwrap();
//!
//! // An upstream that fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let upstream = {
//!     let calls = calls.clone();
//!     service_fn(move |n: u32| {
//!         let call = calls.fetch_add(1, Ordering::Relaxed);
//!         async move { if call < 2 { Err("refused") } else { Ok(n * 2) } }
//!     })
//! };
//! let mut svc = ServiceBuilder::new().layer(layer.clone()).service(upstream);
//! assert_eq!(svc.ready().await.unwrap().call(21).await.unwrap(), 42);
//! assert_eq!(calls.load(Ordering::Relaxed), 3);
//! assert_eq!(layer.handle().snapshot().retries, 2);
//!
//! // Now it only fails: after three attempts the last error comes back, wrapped.
//! let mut failing = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_: u32| async { Err::<u32, _>("down") }));
//! let err = failing.ready().await.unwrap().call(1).await.unwrap_err();
//! let err = err.downcast_ref::<Error>().expect("a retry error");
//! assert!(matches!(err, Error::RetriesExhausted { attempts: 3, .. }));
//! # }
//! ```
//!
//! For HTTP clients, wrap request bodies in a [`ReplayBody`] ([`replayable`]) and use
//! [`RetryLayerBuilder::http`]:
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
//! use tower_prism_retry::{replayable, Backoff, ReplayBody, RetryConfig, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = RetryConfig::builder()
//!     .backoff(Backoff::fixed(Duration::from_millis(1)))
//!     .build()
//!     .unwrap();
//! let layer = RetryLayer::builder(config).http().build().unwrap();
//! let flaky = service_fn(|req: http::Request<ReplayBody<Full<Bytes>>>| async move {
//!     let status = if req.headers().contains_key("x-second-try") { 200 } else { 503 };
//!     Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap())
//! });
//! let mut svc = layer.layer(flaky);
//! let req = http::Request::get("/").body(Full::new(Bytes::new())).unwrap();
//! let response = svc.ready().await.unwrap().call(replayable(req, 64 * 1024)).await.unwrap();
//! assert_eq!(response.status(), 503, "GET retried, then the last 503 returned as is");
//! # }
//! ```
//!
//! A client whose body type is fixed (tonic's channel takes only `tonic::body::Body`)
//! keeps it: [`BoxedReplayLayer`] wraps each body in a [`ReplayBody`] and boxes it again,
//! and [`ReplayBoxed`] copies such requests. For gRPC, classify with
//! [`GrpcClassifier`](tower_prism_core::GrpcClassifier) and read
//! `grpc-retry-pushback-ms` with [`GrpcPushback`]:
//!
//! ```
//! use tower_prism_core::GrpcClassifier;
//! use tower_prism_retry::{BoxedReplayLayer, GrpcPushback, ReplayBoxed, RetryConfig, RetryLayer};
//!
//! type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, tower::BoxError>;
//!
//! let retry = RetryLayer::builder(RetryConfig::default())
//!     .classify(GrpcClassifier::new())
//!     .clone_request(ReplayBoxed)
//!     .response_hint(GrpcPushback)
//!     .build()
//!     .unwrap();
//! // above it: BoxedReplayLayer::new(64 * 1024, tonic::body::Body::new) for tonic
//! let replay = BoxedReplayLayer::new(64 * 1024, Body::new);
//! # let _ = (retry, replay);
//! ```
//!
//! # What is retried
//!
//! - Results are classified by a [`Classify`](tower_prism_core::Classify) over
//!   `Result<&Res, &BoxError>`; only `Failure { retryable: true }` is retried. By default
//!   ([`DefaultClassifier`](tower_prism_core::DefaultClassifier)) every `Err` is a
//!   retryable failure and every `Ok` a success. With [`RetryLayerBuilder::http`], 408,
//!   429 and 5xx responses except 501 and 505 are retried, and only for requests that are
//!   [retry-safe](is_retry_safe) (an idempotent method, the [`Idempotent`] extension or an
//!   `Idempotency-Key` header) with a body still [replayable](ReplayBody). A retryable
//!   *response* (say a 503) that runs out of attempts is returned as it is.
//! - Requests are copied for retries by a [`ReplayRequest`]: by default [`CloneRequest`]
//!   (needs `Req: Clone`), or any closure `Fn(&Req) -> Option<Req>` via
//!   [`RetryLayerBuilder::clone_request`]; `None` sends the request once.
//! - A retry waits its [`Backoff`] (exponential from 50 ms to 2 s with full jitter by
//!   default), or longer if a hint says so: a `Retry-After` header
//!   ([`RetryAfterHeader`]), or an error's hint
//!   ([`RetryLayerBuilder::retry_after_hint`]); after such a wait the backoff starts
//!   over from its first delay, as gRFC A6 has it after pushback. A hint is waited out
//!   only up to `max_retry_after` ([`DEFAULT_MAX_RETRY_AFTER`], 30 s): a longer one ends
//!   the call at once with the response or error that carried it. Every other wait is
//!   bounded by the config too (see [`RetryConfig`]).
//! - The [`RetryBudget`] caps retries at what recent calls earned plus a floor: by
//!   default half a retry per successful attempt and 10 retries per second, so that the
//!   successes of a partly failing upstream pay for retrying its failures while a dead
//!   one, earning nothing, gets only the floor ([`BudgetConfig`] says why, and how to
//!   earn per first attempt instead). A retry it granted that is never sent (the call was
//!   dropped first) is given back.
//!
//! # Deadlines
//!
//! When a deadline stage above calls this stage, the call captures the caller's
//! [`RequestDeadline`](tower_prism_core::RequestDeadline) (its ambient
//! [`current`](tower_prism_core::RequestDeadline::current) value). No backoff (or
//! `Retry-After` wait) starts that cannot end before it: the last result comes back at
//! once instead, an error wrapped in [`Error::CallerDeadline`] (a hint that reaches past
//! the deadline returns the answer that carried it, as with `max_elapsed`); gave-up
//! reason `deadline` in metrics. `attempt_timeout` is cut to the time left, and no hedge
//! is sent once the deadline has passed, nor at a delay that would end after it (one sent
//! at once after a failure still may be). Without a deadline nothing changes.
//!
//! # Hedging
//!
//! With [`RetryConfig::hedge`] (`[retry.hedge]`, a [`HedgeConfig`]), an attempt that goes
//! unanswered for the hedge delay (fixed, or a latency percentile of recent attempts) is
//! raced by a copy of the request, up to `max_hedged` copies per call. As in Polly's
//! hedging, the delay is the longest wait before the next copy: when an attempt fails
//! with a retryable outcome (an attempt timeout included) and a hedge remains, the next
//! hedge is sent at once, before any retry and its backoff; a zero delay (parallel mode)
//! sends every hedge at the first poll that finds the attempt unanswered. The first
//! acceptable answer (a success, or a failure that is not retried) wins and the other
//! attempts are dropped at once (counted in [`RetrySnapshot::cancelled_attempts`]); a
//! retryable failure of one attempt while others are in flight, or while the next hedge
//! is on its way, is set aside, and only once every attempt has failed and no hedge
//! remains do the retry rules above decide what follows (a retry, or the last failure as
//! the call's answer). A pushback saying not to retry (or a hint over `max_retry_after`)
//! sends no further hedge nor retry, but, as gRFC A6 has it, cancels nothing: the
//! attempts in flight may still answer, and that failure is set aside too. Hedges follow
//! the rules of retries: only requests the [`ReplayRequest`] can copy (and, for a
//! [`ReplayBody`], only once no attempt is still reading it: a hedge due during a slow
//! upload waits for the next delay after it), each hedge draws one retry from the
//! [`RetryBudget`] (an empty budget sends none, so hedging cannot multiply the load on a
//! struggling upstream), and over a balancer a hedge (and a retry, when hedging is on or
//! [`Retry::avoid_tried_endpoints`] is) goes to an endpoint the call has not tried yet
//! while there is one. A call whose first attempt answers before the delay allocates
//! nothing and touches no timer if it answers at once.
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Layer, Service, ServiceExt};
//! use tower_prism_retry::{HedgeConfig, RetryConfig, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config: RetryConfig = toml::from_str(r#"
//!     [hedge]
//!     delay = "50ms"
//!     max_hedged = 1
//! "#).unwrap();
//! let layer = RetryLayer::from_config(&config).unwrap();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let counted = calls.clone();
//! // the first attempt takes a second; the hedge, sent at 50 ms, 10 ms
//! let upstream = service_fn(move |n: u32| {
//!     let slow = counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
//!     async move {
//!         let ms = if slow { 1000 } else { 10 };
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, tower::BoxError>(n + ms as u32)
//!     }
//! });
//! let mut svc = layer.layer(upstream);
//! assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 11);
//! let snapshot = layer.handle().snapshot();
//! assert_eq!((snapshot.hedges_sent, snapshot.hedges_won), (1, 1));
//! # }
//! ```
//!
//! A call that succeeds at once takes no lock and allocates nothing for `Clone` requests.
//! Backoffs and attempt timeouts sleep on the tokio timer (`tokio::time`, so
//! `tokio::time::pause()` drives them in tests): run the service inside a tokio runtime
//! with time enabled.
//!
//! # Feature flags
//!
//! None: everything is always built.
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

mod attempts;
mod backoff;
mod body;
mod boxed_replay;
mod budget;
mod config;
mod decide;
mod error;
mod future;
mod grpc;
mod handle;
mod hedge_config;
mod hedging;
mod hint;
mod http;
mod latency;
mod layer;
mod metrics;
mod race;
mod replay;
mod retry_after;
mod service;
mod settings;
mod stage;
mod timers;

pub use backoff::{Backoff, BackoffKind, Jitter};
pub use body::ReplayBody;
pub use boxed_replay::{BoxedReplay, BoxedReplayLayer, Rebox, ReplayBoxed};
pub use budget::RetryBudget;
pub use config::{
    BudgetConfig, BudgetConfigBuilder, RetryConfig, RetryConfigBuilder, DEFAULT_MAX_RETRY_AFTER,
    MAX_ATTEMPTS, MAX_CALL, MAX_WAIT,
};
pub use error::Error;
pub use future::ResponseFuture;
pub use grpc::GrpcPushback;
pub use handle::{RetryHandle, RetrySnapshot};
pub use hedge_config::{HedgeConfig, HedgeConfigBuilder, HedgeDelay, PercentileDelay, MAX_HEDGED};
pub use hint::{ErrorHint, NoHint, ResponseHint};
pub use http::{
    is_idempotent, is_retry_safe, replayable, Idempotent, ReplayIdempotent, IDEMPOTENCY_KEY,
    MAX_IDEMPOTENCY_KEY_LEN,
};
pub use layer::{RetryLayer, RetryLayerBuilder};
pub use replay::{CloneRequest, ReplayRequest};
pub use retry_after::{parse_retry_after, RetryAfterHeader, MAX_RETRY_AFTER_LEN};
pub use service::Retry;
