//! A hyper client over three local backends, one of them failing, behind the stack.
//!
//! ```sh
//! cargo run --example hyper_client
//! ```
//!
//! Starts three HTTP servers on 127.0.0.1 (`east` answers 503 to everything), sends 100
//! requests through rate limit -> circuit breaker -> retry -> balance, and shows the
//! failing backend's 503s retried on a healthy one, the backend ejected, and the traffic
//! going to the healthy two: every request answers 200. Finishes on its own in about a
//! second.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{EndpointError, Get, HttpEndpoint, Reply, Upstream};
use tower::ServiceExt;
use tower_prism::balance::BalanceConfig;
use tower_prism::breaker::BreakerConfig;
use tower_prism::limit::rate::RateLimitConfig;
use tower_prism::retry::{Backoff, RetryConfig};
use tower_prism::{Error, ReliabilityLayer};
use tower_prism::{HttpClassifier, Outcome};

/// The HTTP status rules of [`HttpClassifier`], for the collected replies.
fn classify(result: Result<&Reply, &EndpointError>) -> Outcome {
    match result {
        Ok(reply) => HttpClassifier::status(reply.status),
        Err(_) => Outcome::RETRYABLE,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backends = [
        Upstream::start("north").await,
        Upstream::start("east").await,
        Upstream::start("west").await,
    ];
    backends[1].set_error_status(503);
    backends[1].set_failing(true);
    for b in &backends {
        println!("backend {:<6} http://{}", b.name(), b.addr());
    }

    let mut balance = BalanceConfig::default();
    balance.outlier.consecutive_failures = 3;
    let layer = ReliabilityLayer::builder()
        .name("backends")
        .classify(classify) // breaker, retry and balancer: 5xx replies are failures
        .rate_limit(RateLimitConfig::new(1_000, Duration::from_secs(1)))
        .circuit_breaker(BreakerConfig::default())
        .retry(
            RetryConfig::builder()
                .max_attempts(3)
                .backoff(Backoff::exponential(
                    Duration::from_millis(5),
                    Duration::from_millis(50),
                ))
                .build()
                .unwrap(),
        )
        .balance(balance)
        .build()?;
    let balancer = layer
        .balancer::<&'static str, HttpEndpoint, Get>()
        .endpoints(
            backends
                .iter()
                .map(|b| (b.name(), HttpEndpoint::new(b.addr()))),
        )
        .build()?;
    let handle = balancer.handle().clone();
    let client = layer.balanced(balancer);

    let mut answers = BTreeMap::<String, u32>::new();
    for _ in 0..100 {
        let key = match client.clone().oneshot(Get("/hello")).await {
            Ok(reply) => format!("{} from {}", reply.status.as_u16(), reply.body),
            Err(e) => format!("error: {}", Error::from_box(e).kind()),
        };
        *answers.entry(key).or_default() += 1;
    }
    println!("\n100 requests:");
    for (answer, n) in &answers {
        println!("  {n:>3} x {answer}");
    }
    println!("\nbalancer:");
    for e in handle.snapshot().endpoints {
        println!(
            "  {:<6} healthy {:<5} ejected {:<5} requests {:>3} failures {:>2}",
            e.key, e.healthy, e.ejected, e.requests, e.failures
        );
    }
    Ok(())
}
