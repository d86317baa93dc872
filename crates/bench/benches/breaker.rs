//! Closed-state per-call overhead of the circuit breaker over a ready no-op service:
//! tower-prism beside tower-resilience 0.13's circuit breaker and failsafe 1's (its
//! tower-free `CircuitBreaker::call`), in the same run; then 2 threads calling one shared
//! breaker (tower-prism vs tower-resilience). Every call succeeds, so every breaker stays
//! closed: this is the happy path's cost.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use failsafe::CircuitBreaker as _;
use tower_layer::Layer;
use tower_prism_bench::one_call;
use tower_prism_bench::Noop;
use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer, Window};
use tower_prism_core::Clock;
use tower_service::Service;

const WINDOW: u32 = 100;

/// One poll_ready + call + poll of the response future, as a caller does.
/// Our breaker on `clock` (the default reads the TSC, as quanta does for governor; the
/// tokio variant is what a breaker built with `clock = "tokio"` costs).
fn prism(clock: Clock) -> impl Service<u64> + Clone + Send + 'static {
    let config = BreakerConfig::builder()
        .window(Window::Count { size: WINDOW })
        .minimum_calls(WINDOW)
        .failure_rate_threshold(0.5)
        .clock(clock)
        .build()
        .expect("valid config");
    CircuitBreakerLayer::from_config(&config)
        .expect("valid config")
        .layer(Noop)
}

fn resilience() -> impl Service<u64> + Clone + Send + 'static {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(WINDOW as usize)
        .minimum_number_of_calls(WINDOW as usize)
        .build()
        .expect("valid config")
        .layer(Noop)
}

/// Like [`one_call`], but polls the response future until it is ready: under contention a
/// breaker that locks (tower-resilience's async mutex) can be pending for a moment.
fn one_call_spinning<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, i: u64) {
    assert!(matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))));
    let mut fut = pin!(svc.call(i));
    loop {
        match black_box(fut.as_mut().poll(cx)) {
            Poll::Ready(result) => {
                assert!(result.is_ok());
                return;
            }
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}

/// Two threads each make `iters` calls on their own clone of `svc` (one shared breaker),
/// started together; the time is the slower thread's.
fn two_threads<S>(svc: &S, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let mut svc = svc.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut cx = Context::from_waker(Waker::noop());
                barrier.wait();
                let start = Instant::now();
                for i in 0..iters {
                    one_call_spinning(&mut svc, &mut cx, i);
                }
                start.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}

fn single_thread(c: &mut Criterion) {
    let rt = tower_prism_bench::runtime();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("breaker_closed_call");
    let mut i = 0u64;

    let mut noop = Noop;
    group.bench_function("noop_baseline", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut noop, &mut cx, i)
        })
    });

    for (name, clock) in [
        ("tower_prism", Clock::Auto),
        ("tower_prism_tokio", Clock::Tokio),
    ] {
        let mut ours = prism(clock);
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                one_call(&mut ours, &mut cx, i)
            })
        });
    }

    let mut theirs = resilience();
    group.bench_function("tower_resilience", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut theirs, &mut cx, i)
        })
    });

    let failsafe = failsafe::Config::new().build();
    group.bench_function("failsafe", |b| {
        b.iter(|| {
            i += 1;
            let n = black_box(i);
            assert!(failsafe.call(|| Ok::<u64, ()>(n)).is_ok());
        })
    });
    group.finish();
}

fn shared_two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_closed_call_2_threads_shared");
    let noop = Noop;
    group.bench_function("noop_baseline", |b| {
        b.iter_custom(|iters| two_threads(&noop, iters))
    });
    for (name, clock) in [
        ("tower_prism", Clock::Auto),
        ("tower_prism_tokio", Clock::Tokio),
    ] {
        let ours = prism(clock);
        group.bench_function(name, |b| b.iter_custom(|iters| two_threads(&ours, iters)));
    }
    let theirs = resilience();
    group.bench_function("tower_resilience", |b| {
        b.iter_custom(|iters| two_threads(&theirs, iters))
    });
    group.finish();
}

criterion_group!(benches, single_thread, shared_two_threads);
criterion_main!(benches);
