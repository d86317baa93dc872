//! The closed-state hot path (poll_ready + call + await) allocates nothing, with a metrics
//! recorder installed (so the counter, gauge and histogram handles are live) and without;
//! neither does a pass-through breaker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use tower::Layer;
use tower_prism_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer, State, Window};
use tower_prism_core::{Clock, HealthSignal};
use tower_prism_testkit::{allocations_per_call, CountingAlloc, Echo};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A recorder whose handles are plain atomics, like a real exporter's.
struct Atomics;

struct Recorded(AtomicU64);

impl HistogramFn for Recorded {
    fn record(&self, _value: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl metrics::Recorder for Atomics {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(AtomicU64::new(0)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(AtomicU64::new(0)))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Recorded(AtomicU64::new(0))))
    }
}

fn config(window: Window) -> BreakerConfig {
    config_on(window, Clock::Tokio)
}

fn config_on(window: Window, clock: Clock) -> BreakerConfig {
    BreakerConfig::builder()
        .window(window)
        .minimum_calls(1)
        .clock(clock)
        .build()
        .unwrap()
}

fn assert_no_allocations(layer: CircuitBreakerLayer) {
    let breaker = layer.handle().clone();
    let mut svc = layer.layer(Echo);
    let allocations = allocations_per_call(&mut svc, |i| i, 100, 10_000);
    assert_eq!(allocations, 0, "allocations in 10 000 closed-state calls");
    let snap = breaker.snapshot();
    assert_eq!(snap.state, State::Closed);
    assert!(snap.calls > 0, "the calls were recorded");
}

#[test]
fn closed_state_calls_allocate_nothing() {
    // a recorder is installed once per test binary; every test below runs with it
    let _ = metrics::set_global_recorder(Atomics);
    let windows = [
        Window::Count { size: 100 },
        Window::Time {
            duration: Duration::from_secs(10),
            buckets: 10,
        },
    ];
    for window in windows {
        // outside any runtime (std clock)
        assert_no_allocations(CircuitBreakerLayer::from_config(&config(window)).unwrap());
        assert_no_allocations(
            CircuitBreakerLayer::builder(config(window))
                .health(HealthSignal::new())
                .build()
                .unwrap(),
        );
        // on the TSC clock
        assert_no_allocations(
            CircuitBreakerLayer::from_config(&config_on(window, Clock::Tsc)).unwrap(),
        );
        // inside a tokio runtime (tokio's clock)
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_no_allocations(CircuitBreakerLayer::from_config(&config(window)).unwrap());
        });
    }
}

#[test]
fn pass_through_calls_allocate_nothing() {
    let mut svc: CircuitBreaker<Echo> = CircuitBreaker::pass_through(Echo);
    let allocations = allocations_per_call(&mut svc, |i| i, 10, 10_000);
    assert_eq!(allocations, 0, "allocations in 10 000 pass-through calls");
}
