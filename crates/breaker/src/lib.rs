//! Circuit breaker for tower (work in progress): config, error type, lock-free sliding
//! windows and the state machine ([`Breaker`], not yet covered by tests) are in; the tower
//! layer/service are not wired up yet.

pub mod config;
pub mod error;
pub mod window;

pub use config::{BreakerConfig, BreakerConfigBuilder, Window};
pub use error::Error;
pub mod state;
pub use state::{Breaker, BreakerSnapshot, Permit, State};
