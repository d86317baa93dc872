//! Metric handles that write somewhere keep their endpoint's write gate, whichever way
//! their recorder was installed: every start and end of a call lands on its series, and
//! none lands after its endpoint left. (The gate is left out only for the `metrics`
//! crate's no-op handles, which write nowhere.)

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{Ep, B};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tower::{Service, ServiceExt};
use tower_prism_balance::Balance;
use tower_prism_core::metrics::balance::{IN_FLIGHT, REQUESTS_TOTAL};

/// Calls in flight at once over the balancer's four endpoints.
const CALLS: u64 = 12;

/// A P2C balancer named `name` over four endpoints that answer after 10 s.
fn balancer(name: &str) -> B {
    Balance::builder()
        .name(name)
        .endpoints((0..4).map(|i| (i, Ep::new(i).with_delay(Duration::from_secs(10)))))
        .build()
        .unwrap()
}

/// `metric`'s value for each endpoint slot of balancer `name`, in slot order.
fn per_slot(rendered: &str, metric: &str, name: &str) -> Vec<f64> {
    (0..4)
        .map(|slot| {
            let labels = [format!("name=\"{name}\""), format!("endpoint=\"{slot}\"")];
            let found: Vec<f64> = rendered
                .lines()
                .filter(|l| l.starts_with(&format!("{metric}{{")))
                .filter(|l| labels.iter().all(|label| l.contains(label.as_str())))
                .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
                .collect();
            assert_eq!(found.len(), 1, "{metric} slot {slot}: {rendered}");
            found[0]
        })
        .collect()
}

/// Holds `CALLS` calls in flight, removes an endpoint with calls of its own in flight,
/// then lets every call complete, checking what `render` shows of balancer `name` at each
/// step: every call counted in flight and as a request, the departed endpoint's slot
/// read as empty, and no late write from its calls (which would take it below zero).
async fn every_write_lands(mut b: B, name: &str, render: impl Fn() -> String) {
    let mut calls = Vec::new();
    for i in 0..CALLS {
        calls.push(tokio::spawn(b.ready().await.unwrap().call(i)));
    }
    tokio::task::yield_now().await;
    let rendered = render();
    let in_flight = per_slot(&rendered, IN_FLIGHT, name);
    assert_eq!(in_flight.iter().sum::<f64>(), CALLS as f64, "{rendered}");
    let requests = per_slot(&rendered, REQUESTS_TOTAL, name);
    assert_eq!(requests, in_flight, "{rendered}");
    let snapshot = b.handle().snapshot();
    let started: Vec<f64> = snapshot
        .endpoints
        .iter()
        .map(|e| e.requests as f64)
        .collect();
    assert_eq!(started, requests, "{snapshot:?}");

    let leaving = snapshot
        .endpoints
        .iter()
        .find(|e| e.in_flight > 0)
        .expect("an endpoint with calls in flight");
    assert!(b.handle().remove(&leaving.key));
    let slot = leaving.slot as usize;
    assert_eq!(per_slot(&render(), IN_FLIGHT, name)[slot], 0.0);

    tokio::time::advance(Duration::from_secs(10)).await;
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let rendered = render();
    assert_eq!(
        per_slot(&rendered, IN_FLIGHT, name),
        [0.0; 4],
        "the departed endpoint's calls ended without writing its slot: {rendered}"
    );
    let requests = per_slot(&rendered, REQUESTS_TOTAL, name);
    assert_eq!(requests.iter().sum::<f64>(), CALLS as f64, "{rendered}");
}

/// A recorder installed globally before the balancer is built gets every write.
#[tokio::test(start_paused = true)]
async fn a_global_recorder_gets_every_write() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    every_write_lands(balancer("global"), "global", || handle.render()).await;
}

/// What [`Forward`] forwards to.
static FORWARDED: OnceLock<PrometheusRecorder> = OnceLock::new();

/// A recorder that holds nothing (zero-sized, as the `metrics` crate's no-op recorder is)
/// and forwards every registration to [`FORWARDED`]: its handles write.
struct Forward;

impl Recorder for Forward {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        FORWARDED
            .get()
            .unwrap()
            .describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        FORWARDED
            .get()
            .unwrap()
            .describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        FORWARDED
            .get()
            .unwrap()
            .describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        FORWARDED.get().unwrap().register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        FORWARDED.get().unwrap().register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        FORWARDED.get().unwrap().register_histogram(key, metadata)
    }
}

/// A zero-sized recorder, installed for the thread that builds the balancer, is not
/// taken for the no-op one: its handles get every write too.
#[tokio::test(start_paused = true)]
async fn a_zero_sized_recorder_gets_every_write() {
    assert_eq!(std::mem::size_of::<Forward>(), 0);
    let handle = FORWARDED
        .get_or_init(|| PrometheusBuilder::new().build_recorder())
        .handle();
    let b = metrics::with_local_recorder(&Forward, || balancer("forwarded"));
    every_write_lands(b, "forwarded", || handle.render()).await;
}
