//! Per-call cost of the fault-injection stage over a ready service that answers at once:
//! the bare service, the stage switched off, on with every rate at zero, and on with a 1 %
//! error rate (99 % of calls pass, 1 % fail without reaching the service). On a
//! current-thread runtime, one call at a time.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use tower_layer::Layer;
use tower_prism_bench::Noop;
use tower_prism_fault::{FaultConfig, FaultLayer};
use tower_service::Service;

/// One poll_ready + call + poll of the response future, as a caller does; the result
/// may be an injected error.
fn one_call<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, i: u64) {
    assert!(matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))));
    let fut = pin!(svc.call(i));
    assert!(matches!(black_box(fut.poll(cx)), Poll::Ready(_)));
}

fn fault(config: FaultConfig) -> impl Service<u64> {
    FaultLayer::builder(config)
        .name("bench")
        .build()
        .expect("valid config")
        .layer(Noop)
}

fn per_call(c: &mut Criterion) {
    let rt = tower_prism_bench::runtime();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("fault_call");
    let mut i = 0u64;

    let mut noop = Noop;
    group.bench_function("noop_baseline", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut noop, &mut cx, i)
        })
    });

    let off = FaultConfig::builder()
        .enabled(false)
        .error(0.01)
        .build()
        .expect("valid config");
    let zero = FaultConfig::default();
    let one_percent = FaultConfig::builder()
        .seed(1)
        .error(0.01)
        .build()
        .expect("valid config");
    for (name, config) in [
        ("disabled", off),
        ("enabled_zero_rates", zero),
        ("error_1_percent", one_percent),
    ] {
        let mut svc = fault(config);
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                one_call(&mut svc, &mut cx, i)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_call);
criterion_main!(benches);
