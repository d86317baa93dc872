//! Retry metrics.

use metrics::{describe_counter, describe_histogram, Unit};

/// Counter: logical calls the stage answered, by `result`
/// ([`LABEL_RESULT`](super::LABEL_RESULT)): `successful_without_retry`,
/// `successful_with_retry`, `failed_without_retry`, `failed_with_retry` (resilience4j's
/// four kinds; "with retry" when more than one attempt was sent, hedges aside). Attempts
/// per call: `1 + retries_total / calls_total`.
pub const CALLS_TOTAL: &str = "prism_retry_calls_total";
/// Counter: retries made, by `reason` (`error`, `status`, `timeout`...).
pub const RETRIES_TOTAL: &str = "prism_retry_retries_total";
/// Counter: retries refused because the retry budget was empty.
pub const BUDGET_EXHAUSTED_TOTAL: &str = "prism_retry_budget_exhausted_total";
/// Counter: calls that gave up with a failure, by `reason`: `max_attempts`, `deadline`,
/// `budget`, `not_retryable`, `fatal`, `not_replayable`, or `retry_after` (the upstream
/// asked for a wait longer than `max_retry_after` or than what is left of `max_elapsed`).
pub const GAVE_UP_TOTAL: &str = "prism_retry_gave_up_total";
/// Histogram: backoff slept before each retry.
pub const BACKOFF_SECONDS: &str = "prism_retry_backoff_seconds";

/// Counter: hedged requests, by `result` ([`LABEL_RESULT`](super::LABEL_RESULT)): `sent` (a hedge went out), `won` (its answer was
/// the one returned), `no_budget` (the retry budget refused it).
pub const HEDGES_TOTAL: &str = "prism_retry_hedges_total";
/// Counter: attempts cancelled because another attempt of the same call answered first.
pub const CANCELLED_ATTEMPTS_TOTAL: &str = "prism_retry_cancelled_attempts_total";

/// Every retry metric name.
pub const ALL: &[&str] = &[
    CALLS_TOTAL,
    RETRIES_TOTAL,
    BUDGET_EXHAUSTED_TOTAL,
    GAVE_UP_TOTAL,
    BACKOFF_SECONDS,
    HEDGES_TOTAL,
    CANCELLED_ATTEMPTS_TOTAL,
];

/// Registers the retry metrics' descriptions.
pub fn describe() {
    describe_counter!(
        CALLS_TOTAL,
        Unit::Count,
        "Calls answered, by result: successful or failed, with or without a retry."
    );
    describe_counter!(RETRIES_TOTAL, Unit::Count, "Retries made, by reason.");
    describe_counter!(
        BUDGET_EXHAUSTED_TOTAL,
        Unit::Count,
        "Retries refused by an empty retry budget."
    );
    describe_counter!(
        GAVE_UP_TOTAL,
        Unit::Count,
        "Calls that gave up with a failure, by reason."
    );
    describe_counter!(HEDGES_TOTAL, Unit::Count, "Hedged requests, by result.");
    describe_counter!(
        CANCELLED_ATTEMPTS_TOTAL,
        Unit::Count,
        "Attempts cancelled because another attempt answered first."
    );
    describe_histogram!(
        BACKOFF_SECONDS,
        Unit::Seconds,
        "Backoff slept before a retry."
    );
}
