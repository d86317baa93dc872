//! Deadline metrics.

use metrics::{describe_counter, Unit};

/// Counter: calls whose deadline passed before they were answered, by `reason`: `policy`
/// (the policy's timeout was the tighter) or `request` (the request's own deadline was).
pub const EXPIRED_TOTAL: &str = "prism_deadline_expired_total";

/// Every deadline metric name.
pub const ALL: &[&str] = &[EXPIRED_TOTAL];

/// Registers the deadline metrics' descriptions.
pub fn describe() {
    describe_counter!(
        EXPIRED_TOTAL,
        Unit::Count,
        "Calls whose deadline passed, by which deadline it was."
    );
}
