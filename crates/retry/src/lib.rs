//! Retries for [tower]: backoff schedules with jitter, an adaptive retry budget shared by
//! every clone, outcome classification from `tower-prism-core`, `Retry-After` hints and
//! replayable HTTP request bodies.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_retry::{Backoff, Error, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = RetryLayer::builder()
//!     .max_attempts(3)
//!     .backoff(Backoff::fixed(Duration::from_millis(1)))
//!     .name("example")
//!     .build()
//!     .expect("a valid config");
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
//! - Requests are copied for retries by a [`ReplayRequest`]: by default [`CloneRequest`]
//!   (needs `Req: Clone`), or any closure `Fn(&Req) -> Option<Req>` via
//!   [`RetryBuilder::clone_request`]; `None` sends the request once.
//! - Results are classified by a [`Classify`](tower_prism_core::Classify) over
//!   `Result<&Res, &BoxError>`: only `Failure { retryable: true }` is retried. A retryable
//!   *response* (say a 503) that runs out of attempts is returned as it is.
//! - For HTTP, [`RetryBuilder::http`] retries idempotent requests whose body is a
//!   [`ReplayBody`], by status, honouring `Retry-After`; see the [`http`] module.
//! - Errors from other stages carry hints through [`RetryBuilder::retry_after_hint`].
//! - A hint is waited out only up to `max_retry_after` (30 s by default, see
//!   [`DEFAULT_MAX_RETRY_AFTER`]): a longer one ends the call at once with the response or
//!   error that carried it, so no upstream header holds a caller for long. Every other
//!   wait is bounded by the config too (see [`RetryConfig`]).
//! - The [`RetryBudget`] caps retries at a ratio of recent first attempts plus a floor; a
//!   retry it granted that is never sent (the call was dropped first) is given back.
//!
//! A call that succeeds at once takes no lock and allocates nothing for `Clone` requests
//! (checked by `tests/alloc.rs`). Backoffs and attempt timeouts sleep on the tokio timer
//! (`tokio::time`, so `tokio::time::pause()` drives them in tests): run the service inside a
//! tokio runtime with time enabled.
//!
//! [tower]: https://docs.rs/tower

pub mod backoff;
mod body;
pub mod budget;
mod config;
mod error;
mod future;
pub mod http;
mod layer;
mod policy;
mod service;
mod settings;

pub use backoff::{Backoff, BackoffKind, Jitter};
pub use body::ReplayBody;
pub use budget::RetryBudget;
pub use config::{
    BudgetConfig, RetryConfig, DEFAULT_MAX_RETRY_AFTER, MAX_ATTEMPTS, MAX_CALL, MAX_WAIT,
};
pub use error::{BoxError, Error};
pub use future::ResponseFuture;
pub use layer::{RetryBuilder, RetryLayer, RetrySnapshot};
pub use policy::{CloneRequest, ErrorHint, NoHint, ReplayRequest, ResponseHint};
pub use service::Retry;
