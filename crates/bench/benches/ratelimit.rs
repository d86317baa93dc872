//! Rate limiter admit path, on one thread and on two threads sharing one limiter: tower-prism
//! (unkeyed and keyed) beside governor (direct and keyed, check-and-call), and on two threads
//! tower's `RateLimit` behind `Buffer` (so it can be shared as ours is). Every limiter is
//! sized so that all calls are admitted: this measures the cost of the admission decision,
//! not of rejections.
//!
//! Time per iteration = wall time for every thread to make `iters` calls each.
//!
//! `ratelimit/keyed_cap` measures one thread's keyed admission below the key cap (keys
//! already tracked, one fewer than the cap) and at it (a flood of fresh keys into a map full at the cap), at the
//! default cap of 10k keys and at 200k: `at_cap_full` while the tracked buckets are full
//! again (each fresh key takes a full key's place), `at_cap_limited` while every tracked
//! key is still limited (fresh keys share the overflow bucket).

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use governor::{Quota, RateLimiter};
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_bench::Noop;
use tower_prism_limit::rate::{Clock, RateLimitConfig, RateLimitLayer};

const THREADS: usize = 2;
const KEYS: u64 = 64;

/// Runs `work(iters)` on `threads` threads at once; returns the wall time. Each `work`
/// returns how many calls were not admitted at once, which must be none (checked after the
/// threads are joined, so that a failure fails the run instead of hanging it at the barrier).
fn on_threads<F>(threads: usize, iters: u64, make: impl Fn() -> F) -> Duration
where
    F: FnOnce(u64) -> u64 + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let work = make();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let refused = work(iters);
                barrier.wait();
                refused
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    barrier.wait();
    let elapsed = start.elapsed();
    let refused: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(refused, 0, "{refused} calls were not admitted at once");
    elapsed
}

/// poll_ready + call + poll the response once, with a no-op waker (every service here
/// answers at once). Returns 1 if the call was not admitted at once, else 0.
fn call_now<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, req: u64) -> u64 {
    if !svc.poll_ready(cx).is_ready() {
        return 1;
    }
    let fut = pin!(svc.call(req));
    match fut.poll(cx) {
        Poll::Ready(Ok(_)) => 0,
        _ => 1,
    }
}

/// Benches `make()`'s service on `threads` threads, each calling its own copy.
fn bench_calls<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    threads: usize,
    name: &str,
    make: impl Fn() -> S,
) where
    S: Service<u64> + Send + 'static,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            on_threads(threads, iters, || {
                let mut svc = make();
                move |n| {
                    let mut cx = Context::from_waker(Waker::noop());
                    (0..n).map(|i| call_now(&mut svc, &mut cx, i)).sum()
                }
            })
        })
    });
}

fn admit(c: &mut Criterion) {
    admit_on(c, 1);
    admit_on(c, THREADS);
}

fn admit_on(c: &mut Criterion, threads: usize) {
    let name = if threads == 1 {
        "ratelimit/admit_1_thread".to_owned()
    } else {
        format!("ratelimit/admit_{threads}_threads")
    };
    let mut group = c.benchmark_group(name);
    let huge = NonZeroU32::new(1_000_000_000).unwrap();
    // A burst of 10^9 at 10^9/s: a tolerance of 1 s. With 10^6 (1 ms), a thread preempted
    // between reading the clock and its CAS looks like a request from the past; tower-prism
    // confirms a denial with a fresh reading, governor refuses it (seen in a warm-up here).
    let burst = NonZeroU32::new(1_000_000_000).unwrap();

    let layer = |clock: Clock| {
        RateLimitLayer::from_config(
            &RateLimitConfig::builder()
                .rate(1_000_000_000)
                .period(Duration::from_secs(1))
                .burst(burst.get())
                .clock(clock)
                .build()
                .unwrap(),
        )
        .unwrap()
    };
    // The default clock reads the TSC through quanta, as governor does; the tokio variants
    // are what `clock = "tokio"` (tokio's Instant, a clock_gettime) costs.
    for (name, clock) in [
        ("prism_unkeyed", Clock::Auto),
        ("prism_unkeyed_tokio", Clock::Tokio),
    ] {
        let prism = layer(clock);
        bench_calls(&mut group, threads, name, || prism.layer(Noop));
    }

    let governor = Arc::new(RateLimiter::direct(
        Quota::per_second(huge).allow_burst(burst),
    ));
    group.bench_function("governor_direct", |b| {
        b.iter_custom(|iters| {
            on_threads(threads, iters, || {
                let limiter = governor.clone();
                let mut svc = Noop;
                move |n| {
                    let mut cx = Context::from_waker(Waker::noop());
                    (0..n)
                        .map(|i| match limiter.check() {
                            Ok(()) => call_now(&mut svc, &mut cx, i),
                            Err(_) => 1,
                        })
                        .sum()
                }
            })
        })
    });

    for (name, clock) in [
        ("prism_keyed", Clock::Auto),
        ("prism_keyed_tokio", Clock::Tokio),
    ] {
        let prism = layer(clock).key_fn(|req: &u64| *req % KEYS);
        bench_calls(&mut group, threads, name, || prism.layer(Noop));
    }

    let governor_keyed = Arc::new(RateLimiter::<u64, _, _>::keyed(
        Quota::per_second(huge).allow_burst(burst),
    ));
    group.bench_function("governor_keyed", |b| {
        b.iter_custom(|iters| {
            on_threads(threads, iters, || {
                let limiter = governor_keyed.clone();
                let mut svc = Noop;
                move |n| {
                    let mut cx = Context::from_waker(Waker::noop());
                    (0..n)
                        .map(|i| match limiter.check_key(&(i % KEYS)) {
                            Ok(()) => call_now(&mut svc, &mut cx, i),
                            Err(_) => 1,
                        })
                        .sum()
                }
            })
        })
    });

    if threads == 1 {
        group.finish();
        return;
    }
    // tower's RateLimit is not Clone: share it the usual way, behind a Buffer, with the
    // callers as tasks on a 2-worker runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let buffered = {
        let _guard = runtime.enter();
        tower::buffer::Buffer::new(
            tower::limit::RateLimit::new(
                Noop,
                tower::limit::rate::Rate::new(1_000_000_000, Duration::from_secs(1)),
            ),
            1024,
        )
    };
    group.bench_function("tower_buffered", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..threads)
                    .map(|_| {
                        let mut svc = buffered.clone();
                        tokio::spawn(async move {
                            for i in 0..iters {
                                svc.ready().await.unwrap().call(i).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// One keyed limiter for the `keyed_cap` group: `max_keys` keys, `rate` per `period`
/// with a burst of `burst`, the request itself the key.
fn keyed_service(
    max_keys: usize,
    rate: u32,
    period: Duration,
    burst: u32,
) -> impl Service<u64> + Clone {
    RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(rate)
            .period(period)
            .burst(burst)
            .max_keys(max_keys)
            .build()
            .unwrap(),
    )
    .unwrap()
    .key_fn(|req: &u64| *req)
    .layer(Noop)
}

/// Times `iters` calls of `svc` with the keys `key(i)`; every call must be admitted at once.
fn time_keys<S: Service<u64>>(
    svc: &mut S,
    iters: u64,
    mut key: impl FnMut(u64) -> u64,
) -> Duration {
    let mut cx = Context::from_waker(Waker::noop());
    let start = Instant::now();
    let refused: u64 = (0..iters).map(|i| call_now(svc, &mut cx, key(i))).sum();
    let elapsed = start.elapsed();
    assert_eq!(refused, 0, "{refused} calls were not admitted at once");
    elapsed
}

fn keyed_cap(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit/keyed_cap");
    for max_keys in [10_000u64, 200_000] {
        let cap = max_keys as usize;
        let label = format!("{}k", max_keys / 1000);
        // Below the cap: one key fewer than the cap, each tracked after its first call (the
        // same memory in use as at the cap, so the two differ only in the work per call).
        let mut below = keyed_service(cap, 1_000_000_000, Duration::from_secs(1), 1_000_000_000);
        time_keys(&mut below, max_keys - 1, |i| i);
        group.bench_function(format!("below_cap_{label}"), |b| {
            b.iter_custom(|iters| time_keys(&mut below, iters, |i| i % (max_keys - 1)))
        });

        // At the cap, tracked buckets full again at once (10^9/s): fresh keys evict them.
        let mut full = keyed_service(cap, 1_000_000_000, Duration::from_secs(1), 1_000_000_000);
        time_keys(&mut full, max_keys, |i| i);
        let mut next = 1u64 << 40;
        group.bench_function(format!("at_cap_full_{label}"), |b| {
            b.iter_custom(|iters| {
                time_keys(&mut full, iters, |_| {
                    next += 1;
                    next
                })
            })
        });

        // At the cap, every tracked key limited for 20 s (one token per 20 s, a burst large
        // enough that no call in the run is refused).
        let mut limited = keyed_service(cap, 1, Duration::from_secs(20), 100_000_000);
        time_keys(&mut limited, max_keys, |i| i);
        let mut next = 1u64 << 40;
        group.bench_function(format!("at_cap_limited_{label}"), |b| {
            b.iter_custom(|iters| {
                time_keys(&mut limited, iters, |_| {
                    next += 1;
                    next
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, admit, keyed_cap);
criterion_main!(benches);
