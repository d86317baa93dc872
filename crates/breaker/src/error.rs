//! The breaker's error type.

use std::time::Duration;

/// Errors produced by the circuit breaker itself. Errors of the inner service pass through
/// unchanged (as [`tower::BoxError`](https://docs.rs/tower/latest/tower/type.BoxError.html)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The circuit is open (or half-open with every probe permit taken): the call was
    /// rejected without touching the inner service.
    #[error("circuit open; retry after {retry_after:?}")]
    CircuitOpen {
        /// How long until the breaker may let calls through again (a hint).
        retry_after: Duration,
    },
}

impl Error {
    /// How long until the breaker may let calls through again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::CircuitOpen { retry_after } => Some(*retry_after),
        }
    }
}
