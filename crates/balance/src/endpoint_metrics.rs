//! One endpoint's metric series, labelled by its slot (see [`crate::slots`]). Writes go
//! through the endpoint's [`CallGate`](crate::gate::CallGate), which hands the slot's series
//! over cleanly when the endpoint leaves.

use metrics::{Counter, Gauge};
use tower_prism_core::metrics::{balance as m, LABEL_ENDPOINT, LABEL_NAME};

/// The series of one slot.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) requests: Counter,
    pub(crate) failures: Counter,
    pub(crate) in_flight: Gauge,
    pub(crate) ewma: Gauge,
    pub(crate) ejections: Counter,
    pub(crate) healthy: Gauge,
}

/// An endpoint's handles on its slot's series.
#[derive(Debug)]
pub(crate) struct EndpointMetrics {
    pub(crate) series: Series,
}

impl EndpointMetrics {
    /// Registers the series of balancer `name`'s slot `slot` and sets the gauges to a fresh
    /// endpoint's values (none in flight, healthy, latency `rtt_seconds`), whatever an earlier
    /// endpoint in the slot left there. Counters go on from where they were: a Prometheus
    /// counter never goes down.
    pub(crate) fn register(name: &str, slot: u32, rtt_seconds: f64) -> Self {
        let labels = [
            (LABEL_NAME, name.to_owned()),
            (LABEL_ENDPOINT, slot.to_string()),
        ];
        let series = Series {
            requests: metrics::counter!(m::REQUESTS_TOTAL, &labels),
            failures: metrics::counter!(m::FAILURES_TOTAL, &labels),
            in_flight: metrics::gauge!(m::IN_FLIGHT, &labels),
            ewma: metrics::gauge!(m::LATENCY_EWMA_SECONDS, &labels),
            ejections: metrics::counter!(m::EJECTIONS_TOTAL, &labels),
            healthy: metrics::gauge!(m::ENDPOINT_HEALTHY, &labels),
        };
        series.in_flight.set(0.0);
        series.healthy.set(1.0);
        series.ewma.set(rtt_seconds);
        EndpointMetrics { series }
    }

    /// Sets the gauges to what a departed endpoint is: nothing in flight, not healthy, no
    /// latency. Call it once the endpoint's gate is closed, so no late write follows.
    pub(crate) fn reset_departed(&self) {
        self.series.in_flight.set(0.0);
        self.series.healthy.set(0.0);
        self.series.ewma.set(0.0);
    }
}
