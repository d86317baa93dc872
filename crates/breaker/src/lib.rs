//! A circuit breaker for [tower]: it watches the outcomes of calls to an upstream and, when
//! too many fail (or are too slow), stops calling it for a while, failing fast instead.
//!
//! # Overview
//!
//! [`CircuitBreakerLayer`] wraps a service in a [`CircuitBreaker`]. Every clone of the layer
//! and of its services shares one [`Breaker`] (the handle: state,
//! [`snapshot`](Breaker::snapshot), callbacks on [state changes](Breaker::on_state_change),
//! manual control, [`reconfigure`](Breaker::reconfigure)).
//! A rejected call fails with [`Error::CircuitOpen`], which says when to retry; the inner
//! service's own errors pass through unchanged. Errors are [`tower::BoxError`], as with
//! tower's own middleware: downcast to [`Error`] to tell a rejection apart.
//!
//! The breaker has these [`State`]s:
//!
//! - **closed**: calls pass; each result is classified and counted in a sliding window
//!   ([`Window`]: the last N calls, or the last T). Once the window holds
//!   `minimum_calls` (at most a count window's size), a failure rate at or above
//!   `failure_rate_threshold`, or a slow-call rate (calls over `slow_call_duration`) at or
//!   above `slow_call_rate_threshold`, opens the breaker; so do `consecutive_failures` in a
//!   row, when set.
//! - **open**: calls are rejected for `wait_duration` (growing by `backoff_multiplier` each
//!   time a probe round fails, up to `max_wait_duration`). By default the wait is 500 ms
//!   and doubles while the upstream stays dead, capped at 1 s: a recovered upstream is
//!   let back in within about 1 s, and a dead one sees a few probes a second.
//! - **half-open**: exactly `permitted_calls_in_half_open` (default 3) concurrent probes
//!   pass; their results close the breaker (the window starts empty) or open it again, as
//!   does a round outlasting `max_wait_in_half_open`, when set.
//!
//! An upstream's own word wins: when the failure that opens the circuit says how long to
//! wait, the circuit stays open that long instead, at least
//! [`MIN_HINTED_WAIT`] and at most [`BreakerConfig::effective_max_hinted_wait`] (30 s
//! by default, or `max_wait_duration`). A response says it through the classifier's
//! [`Classify::retry_after`](tower_prism_core::Classify::retry_after)
//! ([`HttpClassifier`](tower_prism_core::HttpClassifier) reads a 429's or 503's
//! `Retry-After`); an error through the hint function given to
//! [`CircuitBreakerLayerBuilder::retry_after_hint`]. Neither is read on a success.
//! - **forced open**, **disabled** and **metrics only**: set by hand with
//!   [`Breaker::force_open`], [`Breaker::disable`] and [`Breaker::metrics_only`] (every
//!   call passes and is counted, the circuit never opens: a breaker watched before it
//!   acts), until [`Breaker::reset`].
//!
//! Results are classified by a [`Classify`](tower_prism_core::Classify) impl: by default
//! ([`DefaultClassifier`](tower_prism_core::DefaultClassifier)) an `Err` is a retryable
//! failure and every `Ok` a success; set
//! [`HttpClassifier`](tower_prism_core::HttpClassifier) or a closure with
//! [`CircuitBreakerLayerBuilder::classify`]. `count_fatal` and `count_not_retryable` say
//! which failures count; one that does not is ignored (neither a failure nor a success, as
//! resilience4j's ignored exceptions).
//!
//! Every setting is in [`BreakerConfig`]: built with [`BreakerConfig::builder`], or read
//! from TOML (humantime durations) and checked with [`BreakerConfig::validate`]; an error
//! names the field, and layers and breakers refuse an invalid config. The
//! policy name (the `name` label of the `prism_breaker_*` metrics) and the classifier and
//! health signal are given on the [layer builder](CircuitBreakerLayer::builder).
//!
//! The breaker reads the CPU's time-stamp counter by default, the cheapest clock, unless
//! tokio's clock is paused when it first reads the time: then it reads
//! `tokio::time::Instant`, so `tokio::time::pause()` (or `start_paused = true`) drives every
//! transition in tests ([`Clock::Auto`](tower_prism_core::Clock::Auto); set
//! [`BreakerConfigBuilder::clock`] to choose one clock for good).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer, Error, State, Window};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let config = BreakerConfig::builder()
//!     .window(Window::Count { size: 10 })
//!     .minimum_calls(4)
//!     .failure_rate_threshold(0.5)
//!     .wait_duration(Duration::from_secs(5))
//!     .build()?;
//! let layer = CircuitBreakerLayer::builder(config).name("payments").build()?;
//! let breaker = layer.handle().clone();
//!
//! // an upstream that fails every request
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_req: u32| async { Err::<u32, _>("upstream down") }));
//!
//! for i in 0..4 {
//!     assert!(svc.ready().await?.call(i).await.is_err());
//! }
//! assert_eq!(breaker.state(), State::Open);
//!
//! // now calls fail fast, without reaching the upstream
//! let err = svc.ready().await?.call(5).await.unwrap_err();
//! let Some(Error::CircuitOpen { retry_after }) = err.downcast_ref::<Error>() else {
//!     panic!("expected a rejection, got {err}");
//! };
//! assert!(*retry_after <= Duration::from_secs(5));
//! # Ok(())
//! # }
//! ```
//!
//! A breaker can also guard work that is not a tower service:
//! [`Breaker::acquire`] gives a [`Permit`] to hand back to [`Breaker::record`] with the
//! call's [`Outcome`](tower_prism_core::Outcome).
//!
//! # Feature flags
//!
//! None: the crate has no optional features.
//!
//! [tower]: https://docs.rs/tower
//! [`tower::BoxError`]: https://docs.rs/tower/latest/tower/type.BoxError.html

#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod config;
#[doc(hidden)]
pub mod direct;
mod error;
mod future;
mod layer;
mod service;
mod state;
mod window;

pub use breaker::Breaker;
pub use config::{
    BreakerConfig, BreakerConfigBuilder, Window, DEFAULT_MAX_HINTED_WAIT, DEFAULT_MAX_WAIT,
    MAX_BACKOFF_MULTIPLIER, MAX_BREAKER_DURATION, MAX_BUCKETS, MAX_CALLS, MAX_PROBES,
    MAX_WINDOW_SIZE, MIN_HINTED_WAIT,
};
pub use error::Error;
pub use future::ResponseFuture;
pub use layer::{CircuitBreakerLayer, CircuitBreakerLayerBuilder};
pub use service::CircuitBreaker;
pub use state::{BreakerSnapshot, Permit, State, StateChange};
