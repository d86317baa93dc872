//! Rate limiter and concurrency limiter metrics.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Counter: requests admitted.
pub const ADMITTED_TOTAL: &str = "prism_ratelimit_admitted_total";
/// Counter: requests rejected, by `reason` (`rate`, `queue_full`, `shed`, `timeout`, `weight`,
/// `backend`...).
pub const REJECTED_TOTAL: &str = "prism_ratelimit_rejected_total";
/// Counter: requests that had to wait in the queue.
pub const QUEUED_TOTAL: &str = "prism_ratelimit_queued_total";
/// Histogram: time spent waiting in the queue before admission.
pub const QUEUE_WAIT_SECONDS: &str = "prism_ratelimit_queue_wait_seconds";
/// Gauge: requests waiting in the queue now.
pub const QUEUE_DEPTH: &str = "prism_ratelimit_queue_depth";
/// Gauge: tokens available in the (unkeyed) bucket at the last update.
pub const TOKENS_AVAILABLE: &str = "prism_ratelimit_tokens_available";
/// Gauge: the current effective rate, in requests (tokens) per second (moves when adaptive).
pub const RATE_PER_SECOND: &str = "prism_ratelimit_rate_per_second";
/// Gauge: keys tracked by a per-key limiter.
pub const KEYS: &str = "prism_ratelimit_keys";
/// Gauge: the adaptive concurrency limit now.
pub const CONCURRENCY_LIMIT: &str = "prism_ratelimit_concurrency_limit";
/// Gauge: requests in flight under the concurrency limiter.
pub const IN_FLIGHT: &str = "prism_ratelimit_in_flight";
/// Counter: errors from a distributed backend (Redis), by `reason`.
pub const BACKEND_ERRORS_TOTAL: &str = "prism_ratelimit_backend_errors_total";

/// Every rate limiter metric name.
pub const ALL: &[&str] = &[
    ADMITTED_TOTAL,
    REJECTED_TOTAL,
    QUEUED_TOTAL,
    QUEUE_WAIT_SECONDS,
    QUEUE_DEPTH,
    TOKENS_AVAILABLE,
    RATE_PER_SECOND,
    KEYS,
    CONCURRENCY_LIMIT,
    IN_FLIGHT,
    BACKEND_ERRORS_TOTAL,
];

/// Registers the rate limiter metrics' descriptions.
pub fn describe() {
    describe_counter!(
        ADMITTED_TOTAL,
        Unit::Count,
        "Requests admitted by the rate limiter."
    );
    describe_counter!(
        REJECTED_TOTAL,
        Unit::Count,
        "Requests rejected by the rate limiter, by reason."
    );
    describe_counter!(
        QUEUED_TOTAL,
        Unit::Count,
        "Requests that waited in the limiter's queue."
    );
    describe_histogram!(
        QUEUE_WAIT_SECONDS,
        Unit::Seconds,
        "Time spent waiting in the limiter's queue."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Requests waiting in the limiter's queue."
    );
    describe_gauge!(
        TOKENS_AVAILABLE,
        Unit::Count,
        "Tokens available in the bucket."
    );
    describe_gauge!(
        RATE_PER_SECOND,
        Unit::CountPerSecond,
        "Effective rate limit in requests (tokens) per second."
    );
    describe_gauge!(KEYS, Unit::Count, "Keys tracked by a per-key limiter.");
    describe_gauge!(
        CONCURRENCY_LIMIT,
        Unit::Count,
        "Adaptive concurrency limit."
    );
    describe_gauge!(
        IN_FLIGHT,
        Unit::Count,
        "Requests in flight under the concurrency limiter."
    );
    describe_counter!(
        BACKEND_ERRORS_TOTAL,
        Unit::Count,
        "Errors from the distributed limiter backend."
    );
}
