//! Fault-injection metrics.

use metrics::{describe_counter, Unit};

/// Counter: faults injected, by `reason`: `error`, `abort`, `status`, `latency`.
pub const INJECTED_TOTAL: &str = "prism_fault_injected_total";

/// Every fault-injection metric name.
pub const ALL: &[&str] = &[INJECTED_TOTAL];

/// Registers the fault-injection metrics' descriptions.
pub fn describe() {
    describe_counter!(INJECTED_TOTAL, Unit::Count, "Faults injected, by kind.");
}
