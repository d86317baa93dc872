//! Hedging: the per-call cost of a retry stage with hedging configured when no hedge
//! fires (the inner service answers on the first poll), tower-prism beside tower's
//! `hedge::Hedge` and tower-resilience's hedge, in the same run, on a current-thread
//! runtime. The plain retry stage (no hedging) and the bare service are the baselines.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::hedge::{Hedge as TowerHedge, Policy as TowerHedgePolicy};
use tower_layer::Layer;
use tower_prism_bench::Noop;
use tower_prism_retry::{HedgeConfig, RetryConfig, RetryLayer};
use tower_resilience_hedge::HedgeLayer as ResilienceHedgeLayer;
use tower_service::Service;

/// poll_ready + call + poll once; the call must succeed at once.
#[inline]
fn call_now<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, req: u64) {
    assert!(svc.poll_ready(cx).is_ready());
    let fut = pin!(svc.call(req));
    match fut.poll(cx) {
        Poll::Ready(Ok(_)) => {}
        _ => panic!("call did not succeed at once"),
    }
}

/// tower's hedge policy: every request may be hedged.
#[derive(Clone)]
struct AnyRequest;

impl TowerHedgePolicy<u64> for AnyRequest {
    fn clone_request(&self, req: &u64) -> Option<u64> {
        Some(*req)
    }
    fn can_retry(&self, _: &u64) -> bool {
        true
    }
}

fn prism(hedge: Option<HedgeConfig>) -> RetryLayer {
    let config = RetryConfig::builder().max_attempts(1).no_budget();
    let config = match hedge {
        Some(h) => config.hedge(h),
        None => config,
    };
    RetryLayer::builder(config.build().unwrap())
        .name("bench")
        .build()
        .unwrap()
}

fn bench<S: Service<u64>>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut i = 0u64;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            call_now(&mut svc, &mut cx, std::hint::black_box(i));
        })
    });
}

fn hedge(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let delay = Duration::from_millis(50);

    let mut group = c.benchmark_group("hedge/no_hedge_fires");
    bench(&mut group, "inner_only", Noop);
    bench(&mut group, "prism_retry_no_hedge", prism(None).layer(Noop));
    bench(
        &mut group,
        "prism_fixed_delay",
        prism(Some(HedgeConfig::fixed(delay))).layer(Noop),
    );
    bench(
        &mut group,
        "prism_p95",
        prism(Some(HedgeConfig::percentile(0.95))).layer(Noop),
    );
    // tower's only mode is a percentile (min 10 data points, p95, 10 s rotation)
    bench(
        &mut group,
        "tower_p95",
        TowerHedge::new::<u64>(Noop, AnyRequest, 10, 0.95, Duration::from_secs(10)),
    );
    bench(
        &mut group,
        "resilience_fixed_delay",
        ResilienceHedgeLayer::builder()
            .delay(delay)
            .max_hedged_attempts(2)
            .build()
            .layer(Noop),
    );
    group.finish();
}

criterion_group!(benches, hedge);
criterion_main!(benches);
