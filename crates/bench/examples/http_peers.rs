//! The stack's HTTP routes beside the peers' equivalents, for `scripts/http-bench --peers`.
//!
//! ```sh
//! cargo run --release -p tower-prism-bench --example http_peers -- 18080
//! ```
//!
//! Serves, on one thread until killed, seven axum routes answering `GET /` with a static
//! string, each behind a `route_layer`: PORT a layer that does nothing; the peers on
//! PORT+1 tower-resilience's rate limiter over its circuit breaker, PORT+2 tower_governor's
//! `GovernorLayer` (one global key), PORT+3 tower-resilience's breaker alone; and the
//! stack's same stages on PORT+4 (`http_errors().reliability(..)` of an `http_server()`
//! policy with a rate limit and a default circuit breaker), PORT+5 (its rate limit alone)
//! and PORT+6 (its breaker alone). tower-resilience's errors become responses through
//! axum's `HandleErrorLayer` (axum's way to serve a layer that can fail); governor answers
//! its own 429s. Every route admits every request: what is measured is each one's cost.

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::routing::{get, MethodRouter};
use axum::Router;
use tower::ServiceBuilder;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;
use tower_governor::GovernorLayer;
use tower_prism::breaker::BreakerConfig;
use tower_prism::limit::rate::RateLimitConfig;
use tower_prism::{HttpServer, ReliabilityLayer, ServiceBuilderExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A rate every route admits everything at: a billion a second.
const RATE: u32 = 1_000_000_000;

fn route() -> MethodRouter {
    get(|| async { "ok" })
}

/// An `http_server()` policy with the rate limit and the default breaker, each if asked.
fn policy(rate_limit: bool, breaker: bool) -> Result<ReliabilityLayer<HttpServer>, BoxError> {
    let mut builder = ReliabilityLayer::builder().http_server().name("peers");
    if rate_limit {
        builder = builder.rate_limit(RateLimitConfig::new(RATE, Duration::from_secs(1)));
    }
    if breaker {
        builder = builder.circuit_breaker(BreakerConfig::default());
    }
    Ok(builder.build()?)
}

fn prism(rate_limit: bool, breaker: bool) -> Result<MethodRouter, BoxError> {
    let layer = policy(rate_limit, breaker)?;
    Ok(route().route_layer(ServiceBuilder::new().http_errors().reliability(layer)))
}

fn governor() -> Result<MethodRouter, BoxError> {
    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(RATE)
        .key_extractor(GlobalKeyExtractor)
        .finish()
        .ok_or("invalid governor config")?;
    Ok(route().route_layer(GovernorLayer::new(config)))
}

/// What a peer's error becomes: a 503, as the stack answers an open circuit.
async fn unavailable(_: BoxError) -> StatusCode {
    StatusCode::SERVICE_UNAVAILABLE
}

fn resilience(rate_limit: bool) -> Result<MethodRouter, BoxError> {
    let breaker = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder().build()?;
    if !rate_limit {
        return Ok(route().route_layer(
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
    Ok(route().route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(unavailable))
            .map_err(Into::<BoxError>::into)
            .layer(limiter)
            .map_err(Into::<BoxError>::into)
            .layer(breaker),
    ))
}

async fn serve(route: MethodRouter, port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = Router::new().route("/", route);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: http_peers PORT")?
        .parse()?;
    let routes = [
        route().route_layer(tower::layer::util::Identity::new()),
        resilience(true)?,
        governor()?,
        resilience(false)?,
        prism(true, true)?,
        prism(true, false)?,
        prism(false, true)?,
    ];
    // One thread, so that a pinned server uses one core and the load generator the other.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for (offset, route) in (0..).zip(routes) {
            serve(route, port + offset).await?;
        }
        println!("serving on 127.0.0.1:{port} to :{}", port + 6);
        std::future::pending::<Result<(), BoxError>>().await
    })
}
