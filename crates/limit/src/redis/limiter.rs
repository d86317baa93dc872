//! [`RedisRateLimiter`]: the shared handle on a Redis rate limit, and its snapshot.

use std::fmt::Display;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::config::RedisConfig;
use super::link::LinkState;
use super::state::State;
use crate::error::Error;

/// A handle on one Redis rate limit. Cheap to clone; every clone (and every service built
/// from the same layer) shares the connection, the counters and the pre-allotted tokens.
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    pub(super) state: Arc<State>,
}

/// A snapshot of a Redis limiter's counters, for health endpoints and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSnapshot {
    /// Requests admitted.
    pub admitted: u64,
    /// Requests rejected by the limit.
    pub rejected: u64,
    /// Decisions Redis did not make (a call failed or timed out, or the connection was
    /// down): each went to the failure policy.
    pub backend_errors: u64,
    /// The connection's state now.
    pub link: LinkState,
    /// Times the connection went down (found broken, or could not be made).
    pub link_downs: u64,
}

impl RedisRateLimiter {
    /// The limit's name: the metrics label, and part of the Redis key.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The config the limiter was built from.
    pub fn config(&self) -> RedisConfig {
        self.state.config.clone()
    }

    /// The counters so far.
    pub fn snapshot(&self) -> RedisSnapshot {
        RedisSnapshot {
            admitted: self.state.n_admitted.load(Relaxed),
            rejected: self.state.n_rejected.load(Relaxed),
            backend_errors: self.state.n_errors.load(Relaxed),
            link: self.state.link.state(),
            link_downs: self.state.link.downs(),
        }
    }

    /// Asks for one token of the shared (unkeyed) bucket without a service around it:
    /// `Ok(())` when admitted, else the rejection ([`Error::RateLimited`] or
    /// [`Error::Unavailable`]).
    pub async fn acquire(&self) -> Result<(), Error> {
        self.state.decide(None).await
    }

    /// Asks for one token of `key`'s bucket, as a request with that key would.
    pub async fn acquire_key(&self, key: impl Display) -> Result<(), Error> {
        self.state.decide(Some(&key.to_string())).await
    }
}
