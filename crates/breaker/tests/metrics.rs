//! The breaker's metrics, read back from an in-memory recorder: calls by outcome,
//! rejections, state gauge, transitions, rate gauges and the duration histogram.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer, Window};
use tower_prism_core::metrics::breaker as m;

/// Every handle is an atomic, found by `name{label=value,...}`; histograms count records.
#[derive(Default, Clone)]
struct Memory(Arc<Mutex<HashMap<String, Arc<Slot>>>>);

#[derive(Default)]
struct Slot(AtomicU64);

impl HistogramFn for Slot {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn render(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Memory {
    fn slot(&self, key: &Key) -> Arc<Slot> {
        self.0
            .lock()
            .unwrap()
            .entry(render(key))
            .or_default()
            .clone()
    }

    fn get(&self, key: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |s| s.0.load(Ordering::Relaxed))
    }

    fn gauge(&self, key: &str) -> f64 {
        f64::from_bits(self.get(key))
    }
}

impl metrics::Recorder for Memory {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(SlotCounter(self.slot(key))))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(SlotGauge(self.slot(key))))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.slot(key))
    }
}

struct SlotCounter(Arc<Slot>);
impl metrics::CounterFn for SlotCounter {
    fn increment(&self, value: u64) {
        self.0 .0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0 .0.store(value, Ordering::Relaxed);
    }
}

struct SlotGauge(Arc<Slot>);
impl metrics::GaugeFn for SlotGauge {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, value: f64) {
        self.0 .0.store(value.to_bits(), Ordering::Relaxed);
    }
}

#[tokio::test(start_paused = true)]
async fn metrics_follow_calls_and_transitions() {
    let memory = Memory::default();
    metrics::set_global_recorder(memory.clone()).expect("the only recorder of this binary");
    let config = BreakerConfig::builder()
        .name("orders")
        .window(Window::Count { size: 4 })
        .minimum_calls(4)
        .wait_duration(Duration::from_secs(1))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    let mut svc = CircuitBreakerLayer::new(config).layer(service_fn(|fail: bool| async move {
        if fail {
            Err("down")
        } else {
            Ok(())
        }
    }));
    macro_rules! call {
        ($fail:expr) => {
            svc.ready().await.unwrap().call($fail).await
        };
    }
    let state = format!("{}{{name=orders}}", m::STATE);
    let rate = format!("{}{{name=orders}}", m::FAILURE_RATE);

    call!(false).unwrap();
    assert_eq!(memory.gauge(&rate), 0.0);
    call!(true).unwrap_err();
    assert_eq!(memory.gauge(&rate), 0.5);
    call!(true).unwrap_err();
    call!(true).unwrap_err(); // 3 of 4: open
    assert_eq!(memory.gauge(&state), 1.0);
    call!(false).unwrap_err(); // rejected
    assert_eq!(
        memory.get(&format!(
            "{}{{name=orders,outcome=success}}",
            m::CALLS_TOTAL
        )),
        1
    );
    assert_eq!(
        memory.get(&format!(
            "{}{{name=orders,outcome=failure}}",
            m::CALLS_TOTAL
        )),
        3
    );
    assert_eq!(
        memory.get(&format!("{}{{name=orders}}", m::REJECTED_TOTAL)),
        1
    );
    assert_eq!(
        memory.get(&format!("{}{{name=orders}}", m::CALL_DURATION_SECONDS)),
        4
    );
    assert_eq!(
        memory.get(&format!(
            "{}{{name=orders,from=closed,to=open}}",
            m::TRANSITIONS_TOTAL
        )),
        1
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    call!(false).unwrap(); // the probe closes it again
    assert_eq!(memory.gauge(&state), 0.0);
    assert_eq!(memory.gauge(&rate), 0.0, "a fresh window shows no failures");
    for (from, to) in [("open", "half_open"), ("half_open", "closed")] {
        let key = format!(
            "{}{{name=orders,from={from},to={to}}}",
            m::TRANSITIONS_TOTAL
        );
        assert_eq!(memory.get(&key), 1, "{key}");
    }
}
