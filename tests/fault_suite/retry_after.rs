//! The issue's own scenario for upstream hints, through the whole `.http()` stack: an
//! upstream answering 503 with `Retry-After: 31536000` (a year) must not hold callers, so
//! it cannot hold the concurrency limit's permits and starve healthy requests.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, BoxError, Layer, ServiceExt};
use tower_prism::limit::concurrency::ConcurrencyConfig;
use tower_prism::retry::{replayable, RetryConfig};
use tower_prism::ReliabilityLayer;

type Body = tower_prism::retry::ReplayBody<Full<Bytes>>;

fn get(path: &str) -> Request<Body> {
    let req = Request::get(path).body(Full::new(Bytes::new())).unwrap();
    replayable(req, 1024)
}

#[tokio::test(start_paused = true)]
async fn a_year_long_retry_after_neither_holds_callers_nor_starves_healthy_requests() {
    let layer = ReliabilityLayer::builder()
        .http()
        .name("hints")
        .concurrency_limit(ConcurrencyConfig::fixed(4))
        .retry(RetryConfig::default())
        .build()
        .unwrap();
    let upstream = service_fn(|req: Request<Body>| async move {
        let res = if req.uri().path() == "/shedding" {
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header("retry-after", "31536000")
                .body(String::new())
        } else {
            Response::builder().body("ok".to_owned())
        };
        Ok::<_, BoxError>(res.unwrap())
    });
    let stack = layer.layer(upstream);

    let started = tokio::time::Instant::now();
    let shed: Vec<_> = (0..4)
        .map(|_| tokio::spawn(stack.clone().oneshot(get("/shedding"))))
        .collect();
    let healthy = stack.clone().oneshot(get("/healthy"));
    let res = tokio::time::timeout(Duration::from_secs(1), healthy)
        .await
        .expect("a healthy request is not starved by hinted ones")
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for call in shed {
        let res = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("a year-long hint does not hold the caller")
            .unwrap()
            .unwrap();
        // the upstream's answer comes back as it is, its hint intact for the caller
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "31536000");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    let snapshot = layer.snapshot().concurrency_limit.unwrap();
    assert_eq!(snapshot.in_flight, 0, "{snapshot:?}");
}
