//! tower-prism: reliability middleware for tower.
//!
//! The component crates, re-exported under one roof.

mod builder;
mod components;
mod config;
mod error;
mod ext;
mod http;
mod layer;
mod stack;

pub use builder::ReliabilityLayerBuilder;
pub use config::{ConfigFileError, PolicyConfig, ReliabilityConfig};
pub use error::{Error, ErrorKind};
pub use ext::{protect, Protected, ServiceBuilderExt};
pub use http::{HttpErrorLayer, HttpErrors, HttpErrorsFuture};
pub use layer::{ReliabilityLayer, Snapshot};
pub use stack::{BoxErrors, BoxErrorsFuture, BreakerStage, RateLimitStage, Reliable, RetryStage};

pub use tower_prism_balance as balance;
pub use tower_prism_breaker as breaker;
pub use tower_prism_core as core;
pub use tower_prism_ratelimit as ratelimit;
pub use tower_prism_retry as retry;
