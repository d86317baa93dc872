//! Decisions per second of the Redis limiter against a local `redis-server` that this example
//! starts on a free loopback port, with and without pre-allotment; 5 rounds of 1 s each,
//! medians printed. Run: `cargo run --release -p tower-prism-limit --features redis
//! --example redis_throughput`.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tower_prism_limit::redis::{RedisConfig, RedisRateLimitLayer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server on PATH: {e}"))?;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("| pre_allot | concurrency | median decisions/s | median µs/decision (per stream) |");
    println!("|---|---|---|---|");
    for concurrency in [1u32, 32] {
        for batch in [1u32, 16, 128] {
            let layer = RedisRateLimitLayer::builder(
                RedisConfig::builder(format!("redis://127.0.0.1:{port}/"))
                    .rate(1_000_000)
                    .period(Duration::from_secs(1))
                    .burst(1_000_000)
                    .timeout(Duration::from_secs(1))
                    .pre_allot(batch)
                    .build()
                    .unwrap(),
            )
            .name(format!("c{concurrency}b{batch}"))
            .build()?;
            layer.handle().acquire().await.map_err(|e| e.to_string())?;
            let mut rates = Vec::new();
            for _ in 0..5 {
                let start = Instant::now();
                let count = run_for_a_second(&layer, concurrency, start).await;
                rates.push(count as f64 / start.elapsed().as_secs_f64());
            }
            rates.sort_by(f64::total_cmp);
            let median = rates[2];
            println!(
                "| {batch} | {concurrency} | {median:.0} | {:.1} |",
                1e6 * f64::from(concurrency) / median
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

/// Runs `concurrency` loops of decisions for one second; returns how many were made.
async fn run_for_a_second(layer: &RedisRateLimitLayer, concurrency: u32, start: Instant) -> u64 {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let layer = layer.clone();
        set.spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(1) {
                // Admitted or rejected, each call is one decision.
                let _ = layer.handle().acquire().await;
                n += 1;
            }
            n
        });
    }
    let mut total = 0;
    while let Some(n) = set.join_next().await {
        total += n.unwrap_or(0);
    }
    total
}
