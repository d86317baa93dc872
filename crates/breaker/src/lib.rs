//! A circuit breaker for [tower]: closed / open / half-open (plus forced open and disabled by
//! hand), count- or time-based sliding windows, failure-rate, slow-call-rate and
//! consecutive-failure trips, an open wait that can grow exponentially, and exactly N
//! concurrent half-open probes. Every clone of the layer and service shares one [`Breaker`].
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer, Error, State, Window};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = BreakerConfig::builder()
//!     .name("payments")
//!     .window(Window::Count { size: 10 })
//!     .minimum_calls(4)
//!     .failure_rate_threshold(0.5)
//!     .wait_duration(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! let layer = CircuitBreakerLayer::new(config);
//! let breaker = layer.breaker().clone();
//!
//! // an upstream that fails every request
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_req: u32| async { Err::<u32, _>("upstream down") }));
//!
//! for i in 0..4 {
//!     assert!(svc.ready().await.unwrap().call(i).await.is_err());
//! }
//! assert_eq!(breaker.state(), State::Open);
//!
//! // now calls fail fast, without reaching the upstream
//! let err = svc.ready().await.unwrap().call(5).await.unwrap_err();
//! let Some(Error::CircuitOpen { retry_after }) = err.downcast_ref::<Error>() else {
//!     panic!("expected a rejection, got {err}");
//! };
//! assert!(*retry_after <= Duration::from_secs(5));
//! # }
//! ```
//!
//! Results are classified by a [`Classify`](tower_prism_core::Classify) impl: by default an
//! `Err` is a retryable failure and every `Ok` a success; set
//! [`HttpClassifier`](tower_prism_core::HttpClassifier) or a closure with
//! [`CircuitBreakerLayer::classify`].
//!
//! Calls are timed (for the slow-call rate and the duration histogram) on
//! `tokio::time::Instant` by default, so `tokio::time::pause()` drives every transition in
//! tests; [`BreakerConfigBuilder::clock`](config::BreakerConfigBuilder::clock) with
//! [`Clock::Tsc`](tower_prism_core::Clock::Tsc) reads the CPU's counter instead (faster, real
//! time only).
//!
//! [tower]: https://docs.rs/tower

pub mod config;
pub mod error;
pub mod future;
pub mod layer;
pub mod service;
pub mod state;
pub mod window;

pub use config::{BreakerConfig, BreakerConfigBuilder, Window};
pub use error::{BoxError, Error};
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreaker;
pub use state::{Breaker, BreakerSnapshot, Permit, State};
