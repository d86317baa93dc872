//! Load balancer metrics. Per-endpoint metrics carry the bounded `endpoint` label.

use metrics::{describe_counter, describe_gauge, Unit};

/// Counter: requests sent to an endpoint.
pub const REQUESTS_TOTAL: &str = "prism_balance_requests_total";
/// Counter: requests to an endpoint classified as failures.
pub const FAILURES_TOTAL: &str = "prism_balance_failures_total";
/// Gauge: requests in flight to an endpoint.
pub const IN_FLIGHT: &str = "prism_balance_in_flight";
/// Gauge: an endpoint's peak-EWMA latency estimate.
pub const LATENCY_EWMA_SECONDS: &str = "prism_balance_latency_ewma_seconds";
/// Counter: times an endpoint was ejected as an outlier.
pub const EJECTIONS_TOTAL: &str = "prism_balance_ejections_total";
/// Gauge: 1 when an endpoint is healthy (not ejected, passing health checks), else 0.
pub const ENDPOINT_HEALTHY: &str = "prism_balance_endpoint_healthy";
/// Gauge: endpoints known to the balancer.
pub const ENDPOINTS: &str = "prism_balance_endpoints";
/// Gauge: endpoints that are healthy.
pub const ENDPOINTS_HEALTHY: &str = "prism_balance_endpoints_healthy";

/// Every balancer metric name.
pub const ALL: &[&str] = &[
    REQUESTS_TOTAL,
    FAILURES_TOTAL,
    IN_FLIGHT,
    LATENCY_EWMA_SECONDS,
    EJECTIONS_TOTAL,
    ENDPOINT_HEALTHY,
    ENDPOINTS,
    ENDPOINTS_HEALTHY,
];

/// Registers the balancer metrics' descriptions.
pub fn describe() {
    describe_counter!(REQUESTS_TOTAL, Unit::Count, "Requests sent to an endpoint.");
    describe_counter!(
        FAILURES_TOTAL,
        Unit::Count,
        "Requests to an endpoint that failed."
    );
    describe_gauge!(IN_FLIGHT, Unit::Count, "Requests in flight to an endpoint.");
    describe_gauge!(
        LATENCY_EWMA_SECONDS,
        Unit::Seconds,
        "Peak-EWMA latency estimate of an endpoint."
    );
    describe_counter!(
        EJECTIONS_TOTAL,
        Unit::Count,
        "Outlier ejections of an endpoint."
    );
    describe_gauge!(ENDPOINT_HEALTHY, "1 when the endpoint is healthy, else 0.");
    describe_gauge!(ENDPOINTS, Unit::Count, "Endpoints known to the balancer.");
    describe_gauge!(ENDPOINTS_HEALTHY, Unit::Count, "Healthy endpoints.");
}
