//! Circuit breaker for tower (work in progress): config, error type and lock-free sliding
//! windows are in; the state machine (`state.rs`, not yet compiled in) and the tower
//! layer/service are not wired up yet.

pub mod config;
pub mod error;
pub mod window;

pub use config::{BreakerConfig, BreakerConfigBuilder, Window};
pub use error::Error;
