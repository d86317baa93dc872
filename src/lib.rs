//! tower-prism: reliability middleware for tower.
//!
//! The component crates, re-exported under one roof.

mod components;
mod error;
mod http;

pub use error::{Error, ErrorKind};
pub use http::{HttpErrorLayer, HttpErrors, HttpErrorsFuture};

pub use tower_prism_balance as balance;
pub use tower_prism_breaker as breaker;
pub use tower_prism_core as core;
pub use tower_prism_ratelimit as ratelimit;
pub use tower_prism_retry as retry;
