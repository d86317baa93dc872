//! Per-call cost of a fallback stage over a ready no-op service: tower-prism beside
//! tower-resilience-fallback 0.14, in the same run, on a current-thread runtime.
//!
//! - `fallback_success`: every call succeeds, so the fallback only watches: the cost
//!   every call pays for having one.
//! - `fallback_answered`: every call fails and the fallback answers with a value: the
//!   error path (classifying the error, counting it, giving the answer).
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use tower_layer::Layer;
use tower_prism::fallback::FallbackLayer;
use tower_prism::ErrorKind;
use tower_prism_bench::one_call;
use tower_prism_bench::Noop;
use tower_service::Service;

/// One poll_ready + call + poll of the response future, as a caller does; the call must
/// complete at once with an answer.
/// The inner service's failure: a zero-sized error, so boxing it allocates nothing and
/// both fallbacks are measured, not the error.
#[derive(Debug, Clone, Copy)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

/// A ready service that fails every call at once.
#[derive(Debug, Clone, Copy)]
struct Failing;

impl Service<u64> for Failing {
    type Response = u64;
    type Error = Refused;
    type Future = Ready<Result<u64, Refused>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u64) -> Self::Future {
        ready(Err(Refused))
    }
}

fn bench<S: Service<u64>>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut i = 0u64;
    group.bench_function(name, |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut svc, &mut cx, i)
        })
    });
}

fn success(c: &mut Criterion) {
    let rt = tower_prism_bench::runtime();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("fallback_success");
    bench(&mut group, "noop_baseline", Noop);
    bench(
        &mut group,
        "tower_prism",
        FallbackLayer::value([ErrorKind::Inner], 0u64).layer(Noop),
    );
    bench(
        &mut group,
        "tower_resilience",
        tower_resilience_fallback::FallbackLayer::<u64, u64, Infallible>::value(0).layer(Noop),
    );
    group.finish();
}

fn answered(c: &mut Criterion) {
    let rt = tower_prism_bench::runtime();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("fallback_answered");
    bench(
        &mut group,
        "tower_prism",
        FallbackLayer::value([ErrorKind::Inner], 0u64).layer(Failing),
    );
    bench(
        &mut group,
        "tower_resilience",
        tower_resilience_fallback::FallbackLayer::<u64, u64, Refused>::value(0).layer(Failing),
    );
    group.finish();
}

criterion_group!(benches, success, answered);
criterion_main!(benches);
