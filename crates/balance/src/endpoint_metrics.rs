//! One endpoint's metric series, labelled by its slot (see [`crate::slots`]), and the gate
//! that hands the slot's series over cleanly when the endpoint leaves.

use metrics::{Counter, Gauge};
use tower_prism_core::metrics::{balance as m, LABEL_ENDPOINT, LABEL_NAME};

use crate::gate::WriteGate;

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

/// An endpoint's handles on its slot's series. Requests still in flight to a removed
/// endpoint finish after the slot may have gone to another endpoint, so every write passes a
/// gate: [`detach`](Self::detach) closes it, waits for writes already inside (a few
/// nanoseconds: one recorder call each) and zeroes the gauges, after which the slot can be
/// reused without a late write landing on the new endpoint's series.
#[derive(Debug)]
pub(crate) struct EndpointMetrics {
    gate: WriteGate,
    series: Series,
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
        EndpointMetrics {
            gate: WriteGate::new(),
            series,
        }
    }

    /// Runs `write` on the series unless the endpoint has left.
    #[inline]
    pub(crate) fn write(&self, write: impl FnOnce(&Series)) {
        self.gate.pass(|| write(&self.series));
    }

    /// Closes the gate for good, waits for the writes inside to finish, and sets the gauges
    /// to what a departed endpoint is: nothing in flight, not healthy, no latency.
    pub(crate) fn detach(&self) {
        if self.gate.close() {
            self.series.in_flight.set(0.0);
            self.series.healthy.set(0.0);
            self.series.ewma.set(0.0);
        }
    }
}
