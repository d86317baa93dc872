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
