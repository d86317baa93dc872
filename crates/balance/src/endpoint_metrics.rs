//! One endpoint's metric series, labelled by its slot (see [`crate::slots`]). Writes go
//! through the endpoint's [`CallGate`](crate::gate::CallGate), which hands the slot's series
//! over cleanly when the endpoint leaves.

use metrics::{Counter, Gauge, Key, Level, Metadata, NoopRecorder, Recorder};
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
    /// The handles may write somewhere: not known to come from the `metrics` crate's no-op
    /// recorder. Their writes need the endpoint's gate (see [`CallGate::new`]).
    ///
    /// [`CallGate::new`]: crate::gate::CallGate::new
    pub(crate) live: bool,
}

/// What `metrics::counter!` and `metrics::gauge!` written in this module would register
/// their series with (the handles are registered through the recorder directly, see
/// [`EndpointMetrics::register`]).
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Whether `recorder` is certainly the `metrics` crate's no-op recorder (the one
/// registrations go to when no recorder is installed, globally or for the thread), whose
/// handles do nothing.
///
/// `metrics` (0.24) has no call that says whether a recorder is installed, and a handle
/// does not tell whether it is a no-op; all there is to compare of a `&dyn Recorder` is
/// its vtable, so this compares it with the no-op recorder's. Equal vtables hold the same
/// functions, the no-op recorder's, which hand out no-op handles whatever they are called
/// on: a `true` is always right. A `false` may be wrong the other way, as the compiler may
/// emit a type's vtable more than once (unoptimised builds do): the endpoint's gate is
/// then kept, which costs two atomic operations per call and is otherwise harmless.
fn is_the_noop_recorder(recorder: &dyn Recorder) -> bool {
    let recorder: *const dyn Recorder = recorder;
    let noop: *const dyn Recorder = &NoopRecorder;
    // the same address on both (a `NoopRecorder` holds nothing), so that only the vtables
    // are compared
    std::ptr::eq(recorder, noop.with_addr(recorder.addr()))
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
        // All six through the one recorder that is looked at (the macros would each look
        // it up again, and another thread may install a recorder in between): whether
        // their writes land anywhere is then known for all of them.
        let (series, live) = metrics::with_recorder(|recorder| {
            let counter =
                |name| recorder.register_counter(&Key::from_parts(name, &labels), &METADATA);
            let gauge = |name| recorder.register_gauge(&Key::from_parts(name, &labels), &METADATA);
            let series = Series {
                requests: counter(m::REQUESTS_TOTAL),
                failures: counter(m::FAILURES_TOTAL),
                in_flight: gauge(m::IN_FLIGHT),
                ewma: gauge(m::LATENCY_EWMA_SECONDS),
                ejections: counter(m::EJECTIONS_TOTAL),
                healthy: gauge(m::ENDPOINT_HEALTHY),
            };
            (series, !is_the_noop_recorder(recorder))
        });
        series.in_flight.set(0.0);
        series.healthy.set(1.0);
        series.ewma.set(rtt_seconds);
        EndpointMetrics { series, live }
    }

    /// Sets the gauges to what a departed endpoint is: nothing in flight, not healthy, no
    /// latency. Call it once the endpoint's gate is closed, so no late write follows.
    pub(crate) fn reset_departed(&self) {
        self.series.in_flight.set(0.0);
        self.series.healthy.set(0.0);
        self.series.ewma.set(0.0);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_recorders_handles_are_live() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let registered =
            metrics::with_local_recorder(&recorder, || EndpointMetrics::register("live", 0, 0.0));
        assert!(registered.live);
    }

    /// What leaves the gate out: with no recorder installed (none is, in this test
    /// binary), the handles are known to be no-ops.
    #[test]
    #[cfg_attr(
        debug_assertions,
        ignore = "unoptimised builds emit the no-op recorder's vtable more than once, so \
                  its handles are taken for live ones (safe, and slower)"
    )]
    fn the_noop_recorders_handles_are_not() {
        assert!(!EndpointMetrics::register("noop", 0, 0.0).live);
    }
}
