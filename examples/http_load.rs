//! HTTP end-to-end overhead: an axum server bare vs with the stack, on loopback.
//!
//! ```sh
//! cargo run --release --example http_load          # 4 rounds of 2 s each way
//! ```
//!
//! A load generator (64 keep-alive connections, hyper client) drives `GET /` for a bounded
//! time against two servers on 127.0.0.1: one bare, one whose route carries
//! `http_errors().reliability(layer)` with a limiter sized to admit everything. Rounds
//! alternate so that machine noise hits both alike; it prints requests per second and the
//! ratio. Finishes on its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;
use tower_prism::breaker::BreakerConfig;
use tower_prism::ratelimit::RateLimitConfig;
use tower_prism::{ReliabilityLayer, ServiceBuilderExt};

const CONNECTIONS: usize = 64;
const ROUND: Duration = Duration::from_secs(2);
const ROUNDS: usize = 4;

async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn load(addr: SocketAddr) -> Result<f64, Box<dyn std::error::Error>> {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONNECTIONS)
        .build_http::<Empty<bytes::Bytes>>();
    let uri: http::Uri = format!("http://{addr}/").parse()?;
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (client, uri, done) = (client.clone(), uri.clone(), done.clone());
        tasks.spawn(async move {
            while start.elapsed() < ROUND {
                let response = client.get(uri.clone()).await?;
                assert!(response.status().is_success(), "{}", response.status());
                response.into_body().collect().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result?.map_err(|e| e.to_string())?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bare = serve(Router::new().route("/", get(|| async { "ok" }))).await?;
    let layer = ReliabilityLayer::builder()
        .http_server()
        .name("load")
        .rate_limit(RateLimitConfig::new(1_000_000_000, Duration::from_secs(1)))
        .circuit_breaker(BreakerConfig::default())
        .build()?;
    let stacked = serve(Router::new().route(
        "/",
        get(|| async { "ok" }).route_layer(ServiceBuilder::new().http_errors().reliability(layer)),
    ))
    .await?;

    println!("{CONNECTIONS} connections, {ROUNDS} rounds of {ROUND:?} each way, loopback");
    let (mut bare_total, mut stacked_total) = (0.0, 0.0);
    for round in 1..=ROUNDS {
        let b = load(bare).await?;
        let s = load(stacked).await?;
        println!(
            "round {round}: bare {b:>8.0} req/s   with stack {s:>8.0} req/s   ratio {:.3}",
            s / b
        );
        bare_total += b;
        stacked_total += s;
    }
    println!(
        "mean: bare {:.0} req/s, with stack {:.0} req/s, stack/bare = {:.3}",
        bare_total / ROUNDS as f64,
        stacked_total / ROUNDS as f64,
        stacked_total / bare_total
    );
    Ok(())
}
