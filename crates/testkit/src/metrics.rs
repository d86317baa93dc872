//! [`Capture`]: an in-memory `metrics` recorder for tests that read metrics back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Keeps the storage of every handle registered through it, found by
/// `name{label=value,...}` (labels in registration order), and what was recorded since.
/// Clones share the storage, so one clone can be installed (globally or locally) while the
/// test reads through another.
///
/// Readers panic on a name that was never registered: a metric that is missing is a failed
/// test, not a zero.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

#[derive(Debug, Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(value);
    }
}

fn render(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

fn read<T: Clone>(map: &Mutex<BTreeMap<String, T>>, key: &str) -> T {
    let map = map.lock().unwrap_or_else(|e| e.into_inner());
    match map.get(key) {
        Some(value) => value.clone(),
        None => panic!(
            "{key} was never registered; registered: {:?}",
            map.keys().collect::<Vec<_>>()
        ),
    }
}

impl Capture {
    /// A counter's total.
    pub fn counter(&self, key: &str) -> u64 {
        read(&self.inner.counters, key).load(Ordering::Relaxed)
    }

    /// A gauge's value.
    pub fn gauge(&self, key: &str) -> f64 {
        f64::from_bits(read(&self.inner.gauges, key).load(Ordering::Relaxed))
    }

    /// Every value a histogram recorded, in order.
    pub fn samples(&self, key: &str) -> Vec<f64> {
        let samples = read(&self.inner.histograms, key);
        let values = samples.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        values
    }

    /// The keys of every handle registered so far, sorted.
    pub fn registered(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        keys.extend(self.inner.counters.lock().unwrap().keys().cloned());
        keys.extend(self.inner.gauges.lock().unwrap().keys().cloned());
        keys.extend(self.inner.histograms.lock().unwrap().keys().cloned());
        keys.sort();
        keys
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut map = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Counter::from_arc(map.entry(render(key)).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut map = self.inner.gauges.lock().unwrap_or_else(|e| e.into_inner());
        Gauge::from_arc(map.entry(render(key)).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut map = self
            .inner
            .histograms
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Histogram::from_arc(map.entry(render(key)).or_default().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_recorded() {
        let capture = Capture::default();
        metrics::with_local_recorder(&capture, || {
            metrics::counter!("c_total", "name" => "x").increment(3);
            let g = metrics::gauge!("g", "name" => "x");
            g.set(2.0);
            g.increment(1.5);
            metrics::histogram!("h_seconds").record(0.25);
        });
        assert_eq!(capture.counter("c_total{name=x}"), 3);
        assert_eq!(capture.gauge("g{name=x}"), 3.5);
        assert_eq!(capture.samples("h_seconds{}"), vec![0.25]);
        assert_eq!(capture.registered().len(), 3);
    }

    #[test]
    #[should_panic(expected = "never registered")]
    fn a_missing_metric_fails() {
        Capture::default().counter("nope{}");
    }
}
