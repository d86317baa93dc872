//! Fallback: answer the errors you pick instead of failing the call.
//!
//! The outermost stage of a policy. When a call fails, its error is classified with
//! [`Error::from_box`](crate::Error::from_box) into an [`ErrorKind`](crate::ErrorKind)
//! (rate limited, circuit open, timeout, retries exhausted, the upstream's own failure...);
//! if the kind is one the stage answers ([`FallbackConfig::on`], every kind when none is
//! listed), the caller gets an answer instead: a closure's, a value, another service's, or
//! for HTTP a configured status, headers and body. Any other error passes on unchanged,
//! as the inner service's own `BoxError` (still downcastable to a stage's error, and
//! classified the same by `Error::from_box` above).
//!
//! A response can be a failure to answer too, as Polly's `ShouldHandle` handles results:
//! the configured HTTP answer replaces the statuses listed in
//! [`FallbackConfig::on_status`] (an upstream's 502 or 503 that retries could not mend),
//! and any answer the responses an
//! [`on_response`](FallbackLayerBuilder::on_response) predicate picks. The answer is
//! given an error of kind [`Inner`](crate::ErrorKind::Inner) holding a
//! [`FailedResponse`].
//!
//! As in Polly and resilience4j, the answer is the caller's last resort, so this stage
//! sits above everything else: it sees the rate limiter's and the breaker's rejections,
//! the deadline's expiry and the error left when retries gave up, and answers each as you
//! chose.
//!
//! The replaced error stays visible: each answer counts in
//! `prism_fallback_answered_total{name, reason}` (`reason` is the kind's label, see
//! [`metrics::fallback`](crate::metrics::fallback)) and the handle's
//! [`snapshot`](FallbackHandle::snapshot), and is logged as a `debug` event with the
//! error's kind and message. An HTTP answer also carries a [`FallbackCause`] extension,
//! for a logging layer above.
//!
//! # Example
//!
//! A catalog that serves an empty list while its upstream's circuit is open, and still
//! fails on anything else:
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_prism::breaker::{BreakerConfig, CircuitBreakerLayer};
//! use tower_prism::fallback::FallbackLayer;
//! use tower_prism::{Error, ErrorKind};
//!
//! # tokio_test::block_on(async {
//! let breaker = CircuitBreakerLayer::from_config(&BreakerConfig::default())?;
//! let open = breaker.handle().clone();
//! let fallback = FallbackLayer::value([ErrorKind::CircuitOpen], Vec::<&str>::new());
//! let counts = fallback.handle().clone();
//!
//! let catalog = ServiceBuilder::new()
//!     .layer(fallback)
//!     .layer(breaker)
//!     .service(service_fn(|page: u32| async move {
//!         if page < 10 { Ok(vec!["tea", "coffee"]) } else { Err("no such page") }
//!     }));
//!
//! assert_eq!(catalog.clone().oneshot(1).await?, ["tea", "coffee"]);
//! let missing = Error::from_box(catalog.clone().oneshot(99).await.unwrap_err());
//! assert_eq!(missing.kind(), ErrorKind::Inner); // not answered: passed on
//!
//! open.force_open();
//! assert!(catalog.clone().oneshot(1).await?.is_empty()); // answered
//! assert_eq!(counts.snapshot().answered_for(ErrorKind::CircuitOpen), 1);
//! # Ok::<_, tower::BoxError>(())
//! # }).unwrap();
//! ```
//!
//! # From a config, for HTTP
//!
//! [`FallbackLayer::from_config`] answers with the configured HTTP response
//! ([`HttpAnswer`]) for services of `http::Response<B>` where `B: From<String>` (axum's
//! `Body`, http-body-util's `Full<Bytes>`). The default is an empty 503, so that a bare
//! `[fallback]` never passes failures off as successes; a degraded answer says so:
//!
//! ```
//! use http::{Request, Response};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_prism::fallback::{FallbackCause, FallbackConfig, FallbackLayer};
//! use tower_prism::ErrorKind;
//!
//! # tokio_test::block_on(async {
//! let config: FallbackConfig = toml::from_str(r#"
//!     on = ["circuit_open", "timeout", "inner"]
//!     status = 200
//!     headers = { "content-type" = "application/json", "x-degraded" = "1" }
//!     body = '{"recommendations": []}'
//! "#)?;
//! let svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::from_config(&config)?)
//!     .service(service_fn(|_: Request<String>| async {
//!         Err::<Response<String>, BoxError>("recommender down".into())
//!     }));
//!
//! let response = svc.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["x-degraded"], "1");
//! assert_eq!(response.body(), r#"{"recommendations": []}"#);
//! assert_eq!(response.extensions().get::<FallbackCause>().unwrap().kind(), ErrorKind::Inner);
//! # Ok::<_, BoxError>(())
//! # }).unwrap();
//! ```
//!
//! The config, the kinds and the HTTP answer can change at run time with
//! [`FallbackHandle::reconfigure`], all or nothing.

mod answer;
mod config;
mod failed_response;
mod future;
mod handle;
mod http_answer;
mod kinds;
mod layer;
mod service;

pub use answer::{Answer, AnswerFn, AnswerService, AnswerValue, OnResponse};
pub use config::{
    FallbackConfig, FallbackConfigBuilder, DEFAULT_STATUS, MAX_BODY, MAX_HEADERS, MAX_HEADER_VALUE,
};
pub use failed_response::FailedResponse;
pub use future::ResponseFuture;
pub use handle::{FallbackHandle, FallbackSnapshot};
pub use http_answer::{FallbackCause, HttpAnswer};
pub use layer::{FallbackLayer, FallbackLayerBuilder};
pub use service::Fallback;
