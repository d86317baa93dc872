//! The breaker stage of a policy takes the upstream's word for its open wait: a 503's
//! `Retry-After` (HTTP profile), or a hint an inner error carries (any profile). In paused
//! time.

use std::time::Duration;

use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_prism::retry::ReplayBody;
use tower_prism::{Http, ReliabilityConfig, ReliabilityLayer};

/// A policy with only a circuit breaker, every setting at its default.
const BREAKER_ONLY: &str = "[policy.x.circuit_breaker]\n";

/// The `retry_after` of the breaker's rejection.
fn open_for(error: &BoxError) -> Duration {
    let mut cursor: Option<&(dyn std::error::Error + 'static)> = Some(&**error);
    while let Some(e) = cursor {
        if let Some(tower_prism::breaker::Error::CircuitOpen { retry_after }) = e.downcast_ref() {
            return *retry_after;
        }
        cursor = e.source();
    }
    panic!("not a circuit-open rejection: {error}");
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_sets_the_breakers_open_wait() {
    let config = ReliabilityConfig::from_toml(BREAKER_ONLY).unwrap();
    let layer = ReliabilityLayer::from_config_as(&config, "x", Http).unwrap();
    let mut svc = layer.layer(service_fn(|_: http::Request<ReplayBody<String>>| async {
        let shed = http::Response::builder()
            .status(503)
            .header(http::header::RETRY_AFTER, "2")
            .body(())
            .unwrap();
        Ok::<_, BoxError>(shed)
    }));
    let request = || http::Request::new(ReplayBody::new(String::new(), 1024));
    let mut rejection = None;
    for _ in 0..100 {
        match svc.ready().await.unwrap().call(request()).await {
            Ok(response) => assert_eq!(response.status(), 503),
            Err(e) => {
                rejection = Some(e);
                break;
            }
        }
    }
    let rejection = rejection.expect("the breaker opened on 503s");
    // the upstream's 2 s, not the default 500 ms first wait
    assert_eq!(open_for(&rejection), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn an_inner_rejections_retry_after_sets_the_breakers_open_wait() {
    let config = ReliabilityConfig::from_toml(BREAKER_ONLY).unwrap();
    let layer = ReliabilityLayer::from_config(&config, "x").unwrap();
    let mut svc = layer.layer(service_fn(|(): ()| async {
        // what a rate limiter below the breaker answers
        Err::<(), BoxError>(Box::new(tower_prism::limit::Error::RateLimited {
            retry_after: Duration::from_secs(3),
        }))
    }));
    let mut rejection = None;
    for _ in 0..100 {
        let e = svc.ready().await.unwrap().call(()).await.unwrap_err();
        if e.to_string().contains("circuit") {
            rejection = Some(e);
            break;
        }
    }
    let rejection = rejection.expect("the breaker opened");
    assert_eq!(open_for(&rejection), Duration::from_secs(3));
}
