//! Load balancer metrics.
//!
//! Per-endpoint series carry the `endpoint` label, whose value is the endpoint's metrics
//! *slot* (`endpoint="3"`), not its address: each endpoint takes the lowest free slot when it
//! joins the balancer and frees it when it leaves, and the next endpoint to join reuses it.
//! A metrics recorder keeps every label set it ever saw, so address labels would leave six
//! series behind for every address that ever came and went; slots keep the series of one
//! balancer at most [`SERIES_PER_ENDPOINT`] x (the most endpoints it held at once) +
//! [`SERIES_PER_BALANCER`], however many endpoints churn through it. Which address holds
//! which slot is in the balancer's `snapshot()` and in its `tracing` events (`endpoint
//! added: slot 3 = 10.0.0.5:80`, and on removal and ejection).
//!
//! When an endpoint leaves, its slot's gauges go to 0 (`in_flight`, `endpoint_healthy`,
//! `latency_ewma_seconds`) and its requests still in flight stop writing; the next endpoint
//! in the slot starts from fresh gauge values. The slot's counters carry on (a Prometheus
//! counter never decreases): `rate()` over them is per slot, across its occupants.

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

/// Counter: DNS resolutions of a balancer's discovery, by `result` (`ok`, `error`,
/// `timeout`, `empty`, `panic`); on every result but `ok` the endpoints stay as they were.
pub const DNS_RESOLUTIONS_TOTAL: &str = "prism_balance_dns_resolutions_total";
/// Gauge: the addresses a balancer's DNS discovery holds (the last good answer).
pub const DNS_ADDRESSES: &str = "prism_balance_dns_addresses";
/// The `result` label values of [`DNS_RESOLUTIONS_TOTAL`].
pub const DNS_RESULTS: &[&str] = &["ok", "error", "timeout", "empty", "panic"];

/// Series per endpoint slot: requests, failures, in flight, latency, ejections, healthy.
pub const SERIES_PER_ENDPOINT: usize = 6;
/// Series per balancer besides its endpoints' ones: endpoints and healthy endpoints.
pub const SERIES_PER_BALANCER: usize = 2;

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
    DNS_RESOLUTIONS_TOTAL,
    DNS_ADDRESSES,
];

/// Registers the balancer metrics' descriptions.
pub fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Requests sent to the endpoint in a slot (label endpoint = slot number, reused after an endpoint leaves; the balancer's snapshot maps slots to addresses)."
    );
    describe_counter!(
        FAILURES_TOTAL,
        Unit::Count,
        "Requests to the endpoint in a slot that failed (endpoint = slot number)."
    );
    describe_gauge!(
        IN_FLIGHT,
        Unit::Count,
        "Requests in flight to the endpoint in a slot (endpoint = slot number; 0 while the slot is free)."
    );
    describe_gauge!(
        LATENCY_EWMA_SECONDS,
        Unit::Seconds,
        "Peak-EWMA latency estimate of the endpoint in a slot (endpoint = slot number; 0 while the slot is free)."
    );
    describe_counter!(
        EJECTIONS_TOTAL,
        Unit::Count,
        "Outlier ejections of the endpoint in a slot (endpoint = slot number)."
    );
    describe_gauge!(
        ENDPOINT_HEALTHY,
        "1 when the endpoint in a slot is healthy, else 0 (endpoint = slot number; 0 while the slot is free)."
    );
    describe_gauge!(ENDPOINTS, Unit::Count, "Endpoints known to the balancer.");
    describe_gauge!(ENDPOINTS_HEALTHY, Unit::Count, "Healthy endpoints.");
    describe_counter!(
        DNS_RESOLUTIONS_TOTAL,
        Unit::Count,
        "DNS resolutions of the balancer's discovery, by result (ok, error, timeout, empty, panic); on a failure the endpoints stay as they were."
    );
    describe_gauge!(
        DNS_ADDRESSES,
        Unit::Count,
        "Addresses the balancer's DNS discovery holds (its last good answer)."
    );
}
