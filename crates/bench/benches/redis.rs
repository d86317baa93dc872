//! Decisions per second of the Redis rate limiter against a local `redis-server` (started
//! by the bench on a free loopback port), with and without local pre-allotment; and the
//! cost of a decision while Redis is down (the failure policy answers at once, instead of
//! after the timeout).
//!
//! `cargo bench -p tower-prism-bench --features redis --bench redis`

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::future::join_all;
use tower_prism_bench::runtime;
use tower_prism_limit::redis::{FailurePolicy, RedisConfig, RedisRateLimitLayer};

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Server(child, port)
}

const CONCURRENCY: u64 = 32;

fn bench(c: &mut Criterion) {
    let server = start_redis();
    let rt = runtime();
    let mut group = c.benchmark_group("redis_decision");
    group.throughput(Throughput::Elements(1));
    for batch in [1u32, 16, 128] {
        // The highest rate the script supports (1/µs): we measure the decision cost.
        let layer = RedisRateLimitLayer::builder(
            RedisConfig::builder(format!("redis://127.0.0.1:{}/", server.1))
                .rate(1_000_000)
                .period(Duration::from_secs(1))
                .burst(1_000_000)
                .timeout(Duration::from_secs(1))
                .pre_allot(batch)
                .build()
                .unwrap(),
        )
        .name(format!("b{batch}"))
        .build()
        .expect("config");
        rt.block_on(layer.handle().acquire())
            .expect("redis reachable");
        group.bench_with_input(BenchmarkId::new("sequential", batch), &layer, |b, layer| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let _ = layer.handle().acquire().await;
                    }
                    t.elapsed()
                })
            })
        });
        group.bench_with_input(
            BenchmarkId::new("concurrent32", batch),
            &layer,
            |b, layer| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let per = iters.div_ceil(CONCURRENCY);
                        let t = Instant::now();
                        join_all((0..CONCURRENCY).map(|_| async move {
                            for _ in 0..per {
                                let _ = layer.handle().acquire().await;
                            }
                        }))
                        .await;
                        t.elapsed()
                    })
                })
            },
        );
    }
    group.finish();
}

/// A decision while Redis is unreachable (nothing listens on the port): after the first
/// call finds it down, each call takes the failure policy (here fail open) without waiting.
fn bench_down(c: &mut Criterion) {
    let rt = runtime();
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port(); // bound and dropped: nothing listens there
    let layer = RedisRateLimitLayer::builder(
        RedisConfig::builder(format!("redis://127.0.0.1:{port}/"))
            .timeout(Duration::from_millis(20))
            .failure_policy(FailurePolicy::FailOpen)
            .build()
            .unwrap(),
    )
    .name("down")
    .build()
    .expect("config");
    rt.block_on(layer.handle().acquire())
        .expect("fail open admits");
    let mut group = c.benchmark_group("redis_decision");
    group.throughput(Throughput::Elements(1));
    group.bench_function("down_fail_open", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let _ = layer.handle().acquire().await;
                }
                t.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_down);
criterion_main!(benches);
