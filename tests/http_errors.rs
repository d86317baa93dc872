//! Errors become HTTP responses, so servers need no error handler.

use std::time::Duration;

use http::{Request, Response};
use tower::{service_fn, BoxError, Layer, ServiceExt};
use tower_prism::{Error, ErrorKind, HttpErrorLayer};

#[tokio::test]
async fn responses_pass_through_and_errors_become_statuses() {
    let inner = service_fn(|req: Request<&'static str>| async move {
        match *req.body() {
            "ok" => Ok(Response::new("fine".to_owned())),
            "slow" => Err::<_, BoxError>(Box::new(tower::timeout::error::Elapsed::new())),
            _ => Err("upstream exploded".into()),
        }
    });
    let service = HttpErrorLayer::new().layer(inner);

    let ok = service.clone().oneshot(Request::new("ok")).await.unwrap();
    assert_eq!((ok.status().as_u16(), ok.body().as_str()), (200, "fine"));
    let slow = service.clone().oneshot(Request::new("slow")).await.unwrap();
    assert_eq!(slow.status(), 504);
    let boom = service.clone().oneshot(Request::new("boom")).await.unwrap();
    assert_eq!(boom.status(), 502);
}

#[test]
fn an_unknown_error_is_inner_and_keeps_its_source() {
    let err = Error::from(BoxError::from("nope"));
    assert_eq!(err.kind(), ErrorKind::Inner);
    assert!(!err.kind().is_rejection());
    assert_eq!(err.retry_after(), None::<Duration>);
    assert_eq!(err.into_inner().to_string(), "nope");
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_route_answers_429_with_retry_after() {
    use tower::ServiceBuilder;
    use tower_prism::limit::rate::RateLimitConfig;
    use tower_prism::{ReliabilityLayer, ServiceBuilderExt};

    let layer = ReliabilityLayer::builder()
        .name("route")
        .rate_limit(RateLimitConfig::new(1, Duration::from_secs(3)))
        .build()
        .unwrap();
    let route = ServiceBuilder::new()
        .http_errors()
        .reliability(layer)
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, std::io::Error>(Response::new("paid".to_owned()))
        }));

    let first = route.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(
        (first.status().as_u16(), first.body().as_str()),
        (200, "paid")
    );
    let second = route.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()[http::header::RETRY_AFTER], "3");
    assert!(second.body().is_empty());

    tokio::time::advance(Duration::from_secs(3)).await;
    let third = route.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(third.status(), 200, "admitted again after Retry-After");
}

/// A request heavier than the rate limit's whole burst can never be admitted: it is
/// answered 429 without `Retry-After` (gRPC: `grpc-retry-pushback-ms: -1`, "do not
/// retry"), and a retry stage above gives it up at once. It was answered as an ordinary
/// rate limit, `Retry-After: 1` (a client obeying it came back for ever), and the retry
/// stage sent it again until `max_attempts`.
#[tokio::test(start_paused = true)]
async fn a_request_heavier_than_the_burst_is_told_not_to_come_back() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tower::ServiceBuilder;
    use tower_prism::fallback::{FallbackConfig, FallbackLayer};
    use tower_prism::limit::rate::{RateLimitConfig, RateLimitLayer};
    use tower_prism::retry::{Backoff, RetryConfig};
    use tower_prism::{ReliabilityLayer, ServiceBuilderExt};

    let config = RateLimitConfig::builder()
        .rate(10)
        .burst(4)
        .build()
        .unwrap();
    // A route charging each request its body's number of tokens.
    let weighed = RateLimitLayer::builder(config.clone())
        .build_http()
        .unwrap()
        .weight_fn(|req: &Request<u32>| *req.body());
    let route = ServiceBuilder::new()
        .http_errors()
        .layer(weighed)
        .service(service_fn(|_req: Request<u32>| async {
            Ok::<_, std::io::Error>(Response::new("paid".to_owned()))
        }));
    let heavy = route.clone().oneshot(Request::new(5)).await.unwrap();
    assert_eq!(heavy.status(), 429);
    assert!(
        heavy.headers().get(http::header::RETRY_AFTER).is_none()
            && heavy.headers().get("x-ratelimit-after").is_none(),
        "{:?}",
        heavy.headers()
    );
    let light = route.clone().oneshot(Request::new(4)).await.unwrap();
    assert_eq!(light.status(), 200);

    let heavy = tower_prism::limit::Error::WeightExceedsBurst {
        weight: 5,
        burst: 4,
    };
    let err = Error::from_box(Box::new(heavy.clone()));
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(err.is_permanent());
    assert_eq!(err.retry_after(), None);
    let grpc: Response<String> = err.to_grpc_response();
    assert_eq!(grpc.headers()["grpc-status"], "8");
    assert_eq!(grpc.headers()["grpc-retry-pushback-ms"], "-1");
    // A fallback answering rate limits with a 429 of its own says the same.
    let fallback = FallbackConfig::builder()
        .on([ErrorKind::RateLimited])
        .status(429)
        .build()
        .unwrap();
    let answered = FallbackLayer::from_config(&fallback)
        .unwrap()
        .layer(service_fn(move |_: ()| {
            let heavy = heavy.clone();
            async move { Err::<Response<String>, BoxError>(Box::new(heavy)) }
        }))
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(answered.status(), 429);
    assert!(answered.headers().get(http::header::RETRY_AFTER).is_none());

    let sent = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&sent);
    let policy = ReliabilityLayer::builder()
        .name("weighed")
        .retry(
            RetryConfig::builder()
                .max_attempts(3)
                .backoff(Backoff::fixed(Duration::from_millis(1)))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .reliability(policy)
        .map_request(move |n: u32| {
            counted.fetch_add(1, Ordering::Relaxed);
            n
        })
        .layer(
            RateLimitLayer::from_config(&config)
                .unwrap()
                .weight_fn(|n: &u32| *n),
        )
        .service(service_fn(
            |n: u32| async move { Ok::<_, std::io::Error>(n) },
        ));
    let err = Error::from_box(client.oneshot(5).await.unwrap_err());
    assert!(err.is_permanent(), "{err}");
    assert_eq!(sent.load(Ordering::Relaxed), 1, "sent once, never retried");
}
