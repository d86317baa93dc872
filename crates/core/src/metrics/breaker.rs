//! Circuit breaker metrics.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Counter: calls that reached the inner service, by `outcome` (see
/// [`Outcome::as_label`](crate::Outcome::as_label)).
pub const CALLS_TOTAL: &str = "prism_breaker_calls_total";
/// Counter: calls rejected without touching the inner service (circuit open, or half-open
/// with every probe permit taken).
pub const REJECTED_TOTAL: &str = "prism_breaker_rejected_total";
/// Gauge: one series per state, by `state` ([`STATES`]): 1 for the breaker's current state,
/// 0 for the others. Every series exists from the moment the breaker is built, so
/// `prism_breaker_state{state="open"} == 1` selects the open breakers and
/// `max_over_time(...[1h])` tells whether one opened between two scrapes.
pub const STATE: &str = "prism_breaker_state";
/// The values the [`STATE`] gauge's `state` label takes.
pub const STATES: &[&str] = &[
    "closed",
    "open",
    "half_open",
    "forced_open",
    "disabled",
    "metrics_only",
];
/// Counter: state transitions, by `from` and `to`.
pub const TRANSITIONS_TOTAL: &str = "prism_breaker_transitions_total";
/// Gauge: the share of the current window's calls that failed, a ratio from 0 to 1 (not a
/// percentage).
pub const FAILURE_RATIO: &str = "prism_breaker_failure_ratio";
/// Gauge: the share of the current window's calls that were slow, a ratio from 0 to 1.
pub const SLOW_CALL_RATIO: &str = "prism_breaker_slow_call_ratio";
/// Histogram: duration of calls that reached the inner service.
pub const CALL_DURATION_SECONDS: &str = "prism_breaker_call_duration_seconds";

/// Every breaker metric name.
pub const ALL: &[&str] = &[
    CALLS_TOTAL,
    REJECTED_TOTAL,
    STATE,
    TRANSITIONS_TOTAL,
    FAILURE_RATIO,
    SLOW_CALL_RATIO,
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
        "1 for the breaker's current state, 0 for its other states (label state: closed, open, half_open, forced_open, disabled, metrics_only)."
    );
    describe_counter!(
        TRANSITIONS_TOTAL,
        Unit::Count,
        "Breaker state transitions, by from and to."
    );
    // No unit for the ratios: `Unit::Percent` reads as 0 to 100 to exporters that map units
    // (OpenTelemetry's "%"), and the names already say `_ratio`.
    describe_gauge!(
        FAILURE_RATIO,
        "Share of the current window's calls that failed, 0 to 1."
    );
    describe_gauge!(
        SLOW_CALL_RATIO,
        "Share of the current window's calls that were slow, 0 to 1."
    );
    describe_histogram!(
        CALL_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of calls through the breaker."
    );
}
