//! The balancer's error type.

use tower_prism_core::ConfigError;

/// Everything the balancer itself can fail with. Services return it boxed in a
/// [`BoxError`](tower_prism_core::BoxError); downcast to inspect it. Endpoint errors pass
/// through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No endpoint could take the request: none is known, or every one is ejected or failing
    /// its health checks and panic mode is off
    /// ([`BalanceConfig::healthy_panic_threshold`](crate::BalanceConfig) 0), or the endpoint
    /// the request waited for (its key's, under consistent hashing) left the rotation before
    /// it was ready.
    #[error("no healthy endpoint ({endpoints} known)")]
    NoHealthyEndpoint {
        /// How many endpoints the balancer knows, healthy or not.
        endpoints: usize,
    },
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A background task (health checks, discovery) was needed but no tokio runtime is running.
    #[error("the balancer's {task} needs a tokio runtime: build it inside one")]
    NoRuntime {
        /// Which task.
        task: &'static str,
    },
    /// An endpoint URI cannot be used (it needs a scheme and an authority).
    #[error("invalid endpoint uri {uri:?}: {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
}
