//! The deadline stage's error type.

use std::time::Duration;

/// Which deadline a call ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExpiryReason {
    /// The policy's `timeout` was the tighter deadline.
    Policy,
    /// The request's own deadline (its extension or header, or the deadline of a stage
    /// above) was the tighter.
    Request,
}

impl ExpiryReason {
    /// The `reason` label of `prism_deadline_expired_total`: `"policy"` or `"request"`.
    pub fn as_label(self) -> &'static str {
        match self {
            ExpiryReason::Policy => "policy",
            ExpiryReason::Request => "request",
        }
    }
}

impl std::fmt::Display for ExpiryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExpiryReason::Policy => "the policy's timeout",
            ExpiryReason::Request => "the request's deadline",
        })
    }
}

/// Errors produced by the deadline stage itself. Errors of the inner service pass through
/// unchanged (as [`tower_prism_core::BoxError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The deadline passed before the inner service answered: its future was dropped (or,
    /// when the request came already expired, the inner service was not called).
    #[error("deadline expired after {after:?} ({reason})")]
    Expired {
        /// How long the deadline allowed the call, from when it reached this stage (zero
        /// for a request that came already expired).
        after: Duration,
        /// Which deadline it was.
        reason: ExpiryReason,
    },
}

impl Error {
    /// How long to wait before retrying: never said (a deadline says nothing about when
    /// the upstream will answer), so `None`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Expired { .. } => None,
        }
    }
}
