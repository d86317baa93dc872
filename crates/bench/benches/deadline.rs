//! Per-call overhead of the deadline stage over a ready no-op service: with a timeout
//! that never fires, and present with no timeout (idle), beside tower's `Timeout` and
//! tower-resilience 0.14's time limiter (`tower-resilience-timelimiter`, cancelling on
//! timeout, its default) in the same run. Every call answers at once, so no timer fires:
//! this is the cost of arming and dropping one.
#![allow(missing_docs)]

use std::task::{Context, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower_layer::Layer;
use tower_prism_bench::one_call;
use tower_prism_bench::Noop;
use tower_prism_deadline::{DeadlineConfig, DeadlineLayer};
use tower_service::Service;

/// Long enough never to fire during a run.
const TIMEOUT: Duration = Duration::from_secs(3600);

/// One poll_ready + call + poll of the response future, as a caller does.
fn prism(timeout: Option<Duration>) -> impl Service<u64> {
    let config = DeadlineConfig::builder()
        .timeout(timeout)
        .build()
        .expect("valid config");
    DeadlineLayer::from_config(&config)
        .expect("valid config")
        .layer(Noop)
}

fn single_thread(c: &mut Criterion) {
    let rt = tower_prism_bench::runtime();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("deadline_call");
    let mut i = 0u64;

    let mut noop = Noop;
    group.bench_function("noop_baseline", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut noop, &mut cx, i)
        })
    });

    let mut timed = prism(Some(TIMEOUT));
    group.bench_function("tower_prism", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut timed, &mut cx, i)
        })
    });

    let mut idle = prism(None);
    group.bench_function("tower_prism_idle", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut idle, &mut cx, i)
        })
    });

    let mut tower_timeout = tower::timeout::TimeoutLayer::new(TIMEOUT).layer(Noop);
    group.bench_function("tower_timeout", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut tower_timeout, &mut cx, i)
        })
    });

    let mut limiter = tower_resilience_timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(TIMEOUT)
        .cancel_running_future(true)
        .build()
        .layer(Noop);
    group.bench_function("tower_resilience", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut limiter, &mut cx, i)
        })
    });
    group.finish();
}

criterion_group!(benches, single_thread);
criterion_main!(benches);
