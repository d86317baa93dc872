//! Circuit breaker metrics.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Counter: calls that reached the inner service, by `outcome` (see
/// [`Outcome::as_label`](crate::Outcome::as_label)).
pub const CALLS_TOTAL: &str = "prism_breaker_calls_total";
/// Counter: calls rejected without touching the inner service (circuit open, or half-open
/// with every probe permit taken).
pub const REJECTED_TOTAL: &str = "prism_breaker_rejected_total";
/// Gauge: the current state, as a number: 0 closed, 1 open, 2 half-open, 3 forced open,
/// 4 disabled.
pub const STATE: &str = "prism_breaker_state";
/// Counter: state transitions, by `from` and `to`.
pub const TRANSITIONS_TOTAL: &str = "prism_breaker_transitions_total";
/// Gauge: the failure rate of the current window, 0 to 1.
pub const FAILURE_RATE: &str = "prism_breaker_failure_rate";
/// Gauge: the slow-call rate of the current window, 0 to 1.
pub const SLOW_CALL_RATE: &str = "prism_breaker_slow_call_rate";
/// Histogram: duration of calls that reached the inner service.
pub const CALL_DURATION_SECONDS: &str = "prism_breaker_call_duration_seconds";

/// Every breaker metric name.
pub const ALL: &[&str] = &[
    CALLS_TOTAL,
    REJECTED_TOTAL,
    STATE,
    TRANSITIONS_TOTAL,
    FAILURE_RATE,
    SLOW_CALL_RATE,
    CALL_DURATION_SECONDS,
];

/// Registers the breaker metrics' descriptions.
pub fn describe() {
    describe_counter!(
        CALLS_TOTAL,
        Unit::Count,
        "Calls that reached the inner service, by outcome."
    );
    describe_counter!(
        REJECTED_TOTAL,
        Unit::Count,
        "Calls rejected by the circuit breaker."
    );
    describe_gauge!(
        STATE,
        "Breaker state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled."
    );
    describe_counter!(
        TRANSITIONS_TOTAL,
        Unit::Count,
        "Breaker state transitions, by from and to."
    );
    describe_gauge!(
        FAILURE_RATE,
        Unit::Percent,
        "Failure rate of the current window (0 to 1)."
    );
    describe_gauge!(
        SLOW_CALL_RATE,
        Unit::Percent,
        "Slow-call rate of the current window (0 to 1)."
    );
    describe_histogram!(
        CALL_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of calls through the breaker."
    );
}
