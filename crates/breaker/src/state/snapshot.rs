//! [`BreakerSnapshot`]: what a health endpoint or a test reads.

use std::time::Duration;

use super::State;

/// What [`Breaker::snapshot`](crate::Breaker::snapshot) reports.
///
/// Plain data; more fields may be added (`#[non_exhaustive]`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The current state.
    pub state: State,
    /// Calls in the sliding window (while half-open: probes finished).
    pub calls: u32,
    /// Of those, failures.
    pub failures: u32,
    /// Of those, slow calls.
    pub slow_calls: u32,
    /// `failures / calls` (0 with no calls).
    pub failure_rate: f64,
    /// `slow_calls / calls` (0 with no calls).
    pub slow_call_rate: f64,
    /// Failures in a row right now.
    pub consecutive_failures: u32,
    /// Probes admitted in the current half-open round.
    pub probes_admitted: u32,
    /// While open: time left before probing. While forced open: the wait duration.
    pub retry_after: Option<Duration>,
}
