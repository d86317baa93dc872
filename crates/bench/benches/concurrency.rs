//! Concurrency limit per call: tower-prism's adaptive `ConcurrencyLimit` (the default, Vegas;
//! AIMD; gradient) beside tower's `ConcurrencyLimit` (a semaphore, its clones sharing it), on one
//! thread and on two threads sharing one limiter. The limits are high enough that every
//! call is admitted: this measures the permit round trip (acquire, call, release) plus, for
//! ours, feeding the algorithm, not rejections.
//!
//! Time per iteration = wall time for the thread(s) to make `iters` calls each.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tower::limit::ConcurrencyLimit as TowerConcurrencyLimit;
use tower::Service;
use tower_layer::Layer;
use tower_prism_bench::Noop;
use tower_prism_limit::concurrency::{
    AimdConfig, ConcurrencyConfig, ConcurrencyLimitLayer, GradientConfig,
};

const THREADS: usize = 2;
const LIMIT: u32 = 1_000;

/// Runs `work(iters)` on `threads` threads at once; returns the wall time.
fn on_threads<F>(threads: usize, iters: u64, make: impl Fn() -> F) -> Duration
where
    F: FnOnce(u64) + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let work = make();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                work(iters);
                barrier.wait();
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    barrier.wait();
    let elapsed = start.elapsed();
    for h in handles {
        h.join().unwrap();
    }
    elapsed
}

/// poll_ready + call + poll the response once, with a no-op waker (the inner service
/// answers at once, so the permit is released before the next call).
fn call_now<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, req: u64) {
    assert!(svc.poll_ready(cx).is_ready(), "not ready");
    let fut = pin!(svc.call(req));
    match fut.poll(cx) {
        Poll::Ready(Ok(_)) => {}
        _ => panic!("not admitted at once"),
    }
}

fn prism_aimd() -> ConcurrencyLimitLayer {
    ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .initial_limit(LIMIT)
            .min_limit(LIMIT)
            .max_limit(LIMIT * 2)
            .algorithm(AimdConfig::default())
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// The default rule (Vegas), as a user who keeps the defaults gets it.
fn prism_default() -> ConcurrencyLimitLayer {
    ConcurrencyLimitLayer::from_config(&ConcurrencyConfig::default()).unwrap()
}

fn prism_gradient() -> ConcurrencyLimitLayer {
    ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .initial_limit(LIMIT)
            .min_limit(LIMIT)
            .max_limit(LIMIT * 2)
            .algorithm(GradientConfig::default())
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// Benchmarks one contender on `threads` threads, each with its own clone of `svc`.
fn bench<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    threads: usize,
    svc: S,
) where
    S: Service<u64> + Clone + Send + 'static,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            on_threads(threads, iters, || {
                let mut svc = svc.clone();
                move |n| {
                    let mut cx = Context::from_waker(Waker::noop());
                    for i in 0..n {
                        call_now(&mut svc, &mut cx, i);
                    }
                }
            })
        })
    });
}

fn per_call(c: &mut Criterion) {
    // tower's ConcurrencyLimit holds a tokio semaphore; its clones share it. It needs no
    // runtime to poll.
    let tower_limit = TowerConcurrencyLimit::new(Noop, LIMIT as usize);
    for (group_name, threads) in [
        ("concurrency/call_1_thread", 1),
        ("concurrency/call_2_threads", THREADS),
    ] {
        let mut group = c.benchmark_group(group_name);
        bench(
            &mut group,
            "prism_default_vegas",
            threads,
            prism_default().layer(Noop),
        );
        bench(&mut group, "prism_aimd", threads, prism_aimd().layer(Noop));
        bench(
            &mut group,
            "prism_gradient",
            threads,
            prism_gradient().layer(Noop),
        );
        bench(&mut group, "tower", threads, tower_limit.clone());
        group.finish();
    }
}

criterion_group!(benches, per_call);
criterion_main!(benches);
