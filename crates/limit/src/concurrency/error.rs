//! The concurrency limiter's rejections.

use std::time::Duration;

/// Why the concurrency limiter refused a request. Services return it boxed in a
/// [`BoxError`](crate::BoxError); downcast to read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConcurrencyError {
    /// `limit` requests were already in flight and the limiter does not wait.
    #[error("concurrency limit of {limit} reached")]
    LimitReached {
        /// The limit at the time.
        limit: u32,
    },
    /// The request waited `max_wait` without a permit coming free.
    #[error("concurrency limit reached; no permit after waiting {waited:?}")]
    Timeout {
        /// How long it waited.
        waited: Duration,
    },
}

impl ConcurrencyError {
    /// The `reason` label value used in the rejection metric: `concurrency` or
    /// `concurrency_timeout`.
    pub fn reason(&self) -> &'static str {
        match self {
            ConcurrencyError::LimitReached { .. } => "concurrency",
            ConcurrencyError::Timeout { .. } => "concurrency_timeout",
        }
    }
}
