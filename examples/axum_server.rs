//! An axum server with a reliability policy per route and Prometheus metrics.
//!
//! ```sh
//! cargo run --example axum_server            # serves for 10 s, driving itself, then exits
//! cargo run --example axum_server -- 60      # serves for 60 s (Ctrl-C stops it earlier)
//! ```
//!
//! Routes: `/pay` (policy `payments`: 5 requests/s), `/search` (policy `search`: 100/s),
//! `/metrics` (Prometheus text). Rejections become HTTP responses (429 + `Retry-After`)
//! through `http_errors()`: no `HandleErrorLayer` needed. Listens on 127.0.0.1 only.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::ServiceBuilder;
use tower_prism::{HttpServer, ReliabilityConfig, ReliabilityLayer, ServiceBuilderExt};

const POLICIES: &str = r#"
[policy.payments.rate_limit]
rate = 5
period = "1s"

[policy.payments.circuit_breaker]
failure_rate_threshold = 0.5
wait_duration = "5s"

[policy.search.rate_limit]
rate = 100
period = "1s"
burst = 20
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10);

    // Install the recorder before building the layers: they register their metrics once.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    tower_prism::metrics::describe();

    let config = ReliabilityConfig::from_toml(POLICIES)?;
    let policy = |name: &str| -> Result<_, Box<dyn std::error::Error>> {
        let layer = ReliabilityLayer::from_config_as(&config, name, HttpServer)?;
        Ok(ServiceBuilder::new().http_errors().reliability(layer))
    };
    let app = Router::new()
        .route(
            "/pay",
            get(|| async { "paid\n" }).route_layer(policy("payments")?),
        )
        .route(
            "/search",
            get(|| async { "found\n" }).route_layer(policy("search")?),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr} for {seconds}s (Ctrl-C to stop earlier)");
    println!("  curl http://{addr}/pay   curl http://{addr}/search   curl http://{addr}/metrics");

    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(seconds)) => {
                        println!("{seconds}s elapsed: shutting down");
                    }
                    _ = tokio::signal::ctrl_c() => println!("Ctrl-C: shutting down"),
                }
            })
            .await
    });

    // Drive some traffic at it so there is something to see.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    for path in ["/pay", "/search"] {
        let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
        let mut retry_after = None;
        for _ in 0..20 {
            let response = client.get(format!("http://{addr}{path}").parse()?).await?;
            *statuses.entry(response.status().as_u16()).or_default() += 1;
            if let Some(v) = response.headers().get(http::header::RETRY_AFTER) {
                retry_after = Some(v.to_str()?.to_owned());
            }
        }
        println!("20 x GET {path}: statuses {statuses:?}, Retry-After {retry_after:?}");
    }
    let metrics = client
        .get(format!("http://{addr}/metrics").parse()?)
        .await?;
    let body = http_body_util::BodyExt::collect(metrics.into_body())
        .await?
        .to_bytes();
    println!("GET /metrics (tower-prism lines):");
    for line in String::from_utf8_lossy(&body).lines() {
        if line.starts_with("prism_") && !line.contains("quantile") {
            println!("  {line}");
        }
    }

    server.await??;
    Ok(())
}
