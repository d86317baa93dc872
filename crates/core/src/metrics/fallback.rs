//! Fallback metrics.

use metrics::{describe_counter, Unit};

/// Counter: calls answered by the fallback instead of the stack, by `reason` (the error
/// kind it replaced: `rate_limited`, `circuit_open`, `timeout`, `inner`...).
pub const ANSWERED_TOTAL: &str = "prism_fallback_answered_total";

/// Every fallback metric name.
pub const ALL: &[&str] = &[ANSWERED_TOTAL];

/// Registers the fallback metrics' descriptions.
pub fn describe() {
    describe_counter!(
        ANSWERED_TOTAL,
        Unit::Count,
        "Calls answered by the fallback, by the error kind it replaced."
    );
}
