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
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod config;
mod endpoint;
mod endpoint_metrics;
mod error;
mod future;
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
