//! Errors of the Redis backend.

/// Why the Redis limiter could not be built or could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The configuration is invalid (bad URL, zero rate, ...): the field, value and why.
    #[error("invalid redis rate limiter config: {0}")]
    Config(#[from] tower_prism_core::config::ConfigError),
    /// Redis did not answer in time or answered with an error, and the failure policy is
    /// [`FailurePolicy::FailClosed`](super::FailurePolicy::FailClosed).
    #[error("redis rate limiter backend unavailable: {0}")]
    Unavailable(String),
}
