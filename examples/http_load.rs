//! HTTP end-to-end overhead: an axum server bare vs with the stack, on loopback.
//!
//! ```sh
//! cargo run --release --example http_load          # 4 rounds of 2 s per server
//! cargo run --release --example http_load -- --serve 18080   # only the servers
//! ```
//!
//! With `--serve PORT`, it only serves the three routes, on PORT (bare), PORT+1 (the
//! do-nothing layer) and PORT+2 (the stack), on one thread, until killed: for a load
//! generator of your own on its own core (`scripts/http-bench` runs wrk that way). Four
//! more tell the stack's cost apart: PORT+3 the stack with no stage configured, PORT+4
//! with the rate limit alone, PORT+5 with the circuit breaker alone, and PORT+6 the whole
//! stack around the router instead of in a `route_layer` (which axum boxes once more).
//! Three more serve the peers users would pick instead, each in a `route_layer`: PORT+7
//! tower_governor's `GovernorLayer` (one global key, the same rate), PORT+8
//! tower-resilience's rate limiter over its circuit breaker, PORT+9 its breaker alone;
//! tower-resilience's errors become responses through axum's `HandleErrorLayer` (a route
//! layer must not fail), governor answers its own 429s.
//!
//! A load generator (64 keep-alive connections, hyper client) drives `GET /` for a bounded
//! time against three servers on 127.0.0.1: one bare, one whose route carries a layer that
//! does nothing (`Identity`: what axum's `route_layer` costs by itself), and one whose route
//! carries `http_errors().reliability(layer)` with a limiter sized to admit everything and a
//! circuit breaker. Each round runs the three in turn, starting with a different one each
//! round, so that machine noise and warm-up hit them alike; it prints requests per second and
//! the ratios to bare. Finishes on its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::routing::get;
use axum::routing::MethodRouter;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::make::Shared;
use tower::{BoxError, ServiceBuilder};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;
use tower_governor::GovernorLayer;
use tower_prism::breaker::BreakerConfig;
use tower_prism::limit::rate::RateLimitConfig;
use tower_prism::{HttpServer, ReliabilityLayer, ServiceBuilderExt};

const CONNECTIONS: usize = 64;
/// A rate every limited route admits everything at: a billion a second.
const RATE: u32 = 1_000_000_000;
const ROUND: Duration = Duration::from_secs(2);
const ROUNDS: usize = 4;

async fn serve(app: Router, port: u16) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// The three servers, on `port`, `port + 1` and `port + 2` (any free ports for 0): bare,
/// behind a layer that does nothing (`Identity`), and behind the stack.
async fn servers(port: u16) -> Result<[SocketAddr; 3], Box<dyn std::error::Error>> {
    let next = |k: u16| if port == 0 { 0 } else { port + k };
    let bare = serve(Router::new().route("/", get(|| async { "ok" })), next(0)).await?;
    let identity = serve(
        Router::new().route(
            "/",
            get(|| async { "ok" }).route_layer(tower::layer::util::Identity::new()),
        ),
        next(1),
    )
    .await?;
    let stacked = serve_stack(policy(true, true)?, next(2)).await?;
    Ok([bare, identity, stacked])
}

/// The stack's route with no stage, the rate limit alone and the breaker alone, on
/// `port + 3` to `port + 5`, and the whole stack around the router on `port + 6`.
async fn stage_servers(port: u16) -> Result<[SocketAddr; 4], Box<dyn std::error::Error>> {
    let around = ServiceBuilder::new()
        .http_errors()
        .reliability(policy(true, true)?)
        .service(Router::new().route("/", get(|| async { "ok" })));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port + 6)).await?;
    let around_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, Shared::new(around)).await });
    Ok([
        serve_stack(policy(false, false)?, port + 3).await?,
        serve_stack(policy(true, false)?, port + 4).await?,
        serve_stack(policy(false, true)?, port + 5).await?,
        around_addr,
    ])
}

/// An `http_server()` policy with a rate limit sized to admit everything and a default
/// circuit breaker, each if asked for.
fn policy(
    rate_limit: bool,
    breaker: bool,
) -> Result<ReliabilityLayer<HttpServer>, Box<dyn std::error::Error>> {
    let mut builder = ReliabilityLayer::builder().http_server().name("load");
    if rate_limit {
        builder = builder.rate_limit(RateLimitConfig::new(RATE, Duration::from_secs(1)));
    }
    if breaker {
        builder = builder.circuit_breaker(BreakerConfig::default());
    }
    Ok(builder.build()?)
}

/// The route behind `http_errors().reliability(layer)`, served on `port`.
async fn serve_stack(
    layer: ReliabilityLayer<HttpServer>,
    port: u16,
) -> std::io::Result<SocketAddr> {
    let route =
        get(|| async { "ok" }).route_layer(ServiceBuilder::new().http_errors().reliability(layer));
    serve(Router::new().route("/", route), port).await
}

/// The peers' routes on `port + 7` to `port + 9`: tower_governor, tower-resilience's rate
/// limiter over its breaker, its breaker alone.
async fn peer_servers(port: u16) -> Result<[SocketAddr; 3], Box<dyn std::error::Error>> {
    let governor = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(RATE)
        .key_extractor(GlobalKeyExtractor)
        .finish()
        .ok_or("invalid governor config")?;
    let governed = get(|| async { "ok" }).route_layer(GovernorLayer::new(governor));
    Ok([
        serve(Router::new().route("/", governed), port + 7).await?,
        serve(Router::new().route("/", resilience(true)?), port + 8).await?,
        serve(Router::new().route("/", resilience(false)?), port + 9).await?,
    ])
}

/// The route behind tower-resilience's circuit breaker, under its rate limiter if asked.
fn resilience(rate_limit: bool) -> Result<MethodRouter, Box<dyn std::error::Error>> {
    // What an error becomes: a 503, as the stack answers an open circuit.
    let unavailable = |_: BoxError| async { StatusCode::SERVICE_UNAVAILABLE };
    let breaker = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder().build()?;
    let route = get(|| async { "ok" });
    if !rate_limit {
        return Ok(route.route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(unavailable))
                .map_err(Into::<BoxError>::into)
                .layer(breaker),
        ));
    }
    let limiter = tower_resilience::ratelimiter::RateLimiterLayer::builder()
        .limit_for_period(RATE as usize)
        .refresh_period(Duration::from_secs(1))
        .timeout_duration(Duration::from_millis(1))
        .build()?;
    Ok(route.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(unavailable))
            .map_err(Into::<BoxError>::into)
            .layer(limiter)
            .map_err(Into::<BoxError>::into)
            .layer(breaker),
    ))
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, port] = args.as_slice() {
        if flag == "--serve" {
            let port: u16 = port.parse()?;
            // One thread, so that a pinned server uses one core and the load generator
            // the other.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            return runtime.block_on(async {
                let addrs = servers(port).await?;
                let stages = stage_servers(port).await?;
                let peers = peer_servers(port).await?;
                println!(
                    "serving: bare {} identity {} stack {}; stack with no stage {}, rate limit \
                     alone {}, breaker alone {}, stack around the router {}; governor {}, \
                     tower-resilience {}, its breaker {}",
                    addrs[0],
                    addrs[1],
                    addrs[2],
                    stages[0],
                    stages[1],
                    stages[2],
                    stages[3],
                    peers[0],
                    peers[1],
                    peers[2]
                );
                std::future::pending::<()>().await;
                Ok(())
            });
        }
    }
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let servers = self::servers(0).await?;
    println!("{CONNECTIONS} connections, {ROUNDS} rounds of {ROUND:?} per server, loopback");
    let mut totals = [0.0; 3];
    for round in 0..ROUNDS {
        let mut rates = [0.0; 3];
        for k in 0..servers.len() {
            let i = (round + k) % servers.len();
            rates[i] = load(servers[i]).await?;
        }
        println!(
            "round {}: bare {:>7.0}  identity layer {:>7.0} ({:.3})  with stack {:>7.0} ({:.3}) req/s",
            round + 1,
            rates[0],
            rates[1],
            rates[1] / rates[0],
            rates[2],
            rates[2] / rates[0],
        );
        for (total, rate) in totals.iter_mut().zip(rates) {
            *total += rate;
        }
    }
    let mean = |i: usize| totals[i] / ROUNDS as f64;
    println!(
        "mean: bare {:.0}, identity layer {:.0} ({:.3} of bare), with stack {:.0} ({:.3} of bare, {:.3} of identity) req/s",
        mean(0),
        mean(1),
        totals[1] / totals[0],
        mean(2),
        totals[2] / totals[0],
        totals[2] / totals[1],
    );
    Ok(())
}
