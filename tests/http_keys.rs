//! A policy's `rate_limit.key` and `rate_limit.headers` in the `ReliabilityLayer` stack:
//! per-key buckets on HTTP profiles, rate-limit headers on 429s and (when configured)
//! on admitted responses, `Retry-After` on every 429 and 503, and the typed errors of a
//! key a profile cannot read or headers it cannot write. Paused tokio time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_prism::limit::rate::RateLimitRejection;
use tower_prism::{Error, ErrorKind, ReliabilityConfig, ReliabilityLayer, ServiceBuilderExt};

fn policy(toml: &str) -> ReliabilityConfig {
    ReliabilityConfig::from_toml(toml).unwrap()
}

type Route = tower::util::BoxCloneService<Request<()>, Response<String>, Infallible>;

/// An HTTP server route behind policy `api` of `toml`, answering errors itself.
fn route(toml: &str) -> (Route, ReliabilityLayer<tower_prism::HttpServer>) {
    let layer =
        ReliabilityLayer::from_config_as(&policy(toml), "api", tower_prism::HttpServer).unwrap();
    let svc = ServiceBuilder::new()
        .http_errors()
        .reliability(layer.clone())
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new("ok".to_owned()))
        }));
    (tower::util::BoxCloneService::new(svc), layer)
}

async fn call(route: &mut Route, api_key: &str) -> Response<String> {
    let request = Request::builder()
        .uri("/orders")
        .header("x-api-key", api_key)
        .body(())
        .unwrap();
    route.ready().await.unwrap().call(request).await.unwrap()
}

const BY_API_KEY: &str = r#"
    [policy.api.rate_limit]
    rate = 2
    period = "10s"
    key = { header = "x-api-key" }
"#;

#[tokio::test(start_paused = true)]
async fn two_api_keys_have_separate_buckets() {
    let (mut route, _) = route(BY_API_KEY);
    for _ in 0..2 {
        assert_eq!(call(&mut route, "alice").await.status(), StatusCode::OK);
    }
    assert_eq!(call(&mut route, "alice").await.status(), 429);
    for _ in 0..2 {
        assert_eq!(
            call(&mut route, "bob").await.status(),
            StatusCode::OK,
            "bob's own bucket"
        );
    }
    assert_eq!(call(&mut route, "bob").await.status(), 429);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(call(&mut route, "alice").await.status(), StatusCode::OK);
    assert_eq!(call(&mut route, "alice").await.status(), 429);
}

#[tokio::test(start_paused = true)]
async fn a_429_carries_rate_limit_headers_and_retry_after() {
    let (mut route, _) = route(BY_API_KEY);
    for _ in 0..2 {
        let admitted = call(&mut route, "alice").await;
        assert!(
            admitted.headers().get("ratelimit").is_none(),
            "headers not configured"
        );
    }
    tokio::time::advance(Duration::from_millis(1500)).await;
    let shed = call(&mut route, "alice").await;
    assert_eq!(shed.status(), 429);
    let h = shed.headers();
    // A token every 5 s; the first comes back 3.5 s from now.
    assert_eq!(h["retry-after"], "4");
    assert_eq!(h["ratelimit-policy"], "\"api\";q=2;w=10");
    assert_eq!(h["ratelimit"], "\"api\";r=0;t=4");
    assert_eq!(h["x-ratelimit-limit"], "2");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(h["x-ratelimit-reset"], "4");
    assert_eq!(h["x-ratelimit-after"], "4");
}

#[tokio::test(start_paused = true)]
async fn admitted_responses_carry_the_limiters_state_when_configured() {
    let (mut route, layer) = route(
        r#"
        [policy.api.rate_limit]
        rate = 3
        period = "3s"
        headers = true
        "#,
    );
    for remaining in [2, 1, 0] {
        let response = call(&mut route, "any").await;
        assert_eq!(response.status(), StatusCode::OK);
        let tokens = layer.snapshot().rate_limit.unwrap().tokens;
        assert_eq!(tokens, remaining);
        let h = response.headers();
        assert_eq!(h["x-ratelimit-remaining"], tokens.to_string().as_str());
        assert_eq!(h["x-ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-policy"], "\"api\";q=3;w=3");
        assert_eq!(
            h["ratelimit"],
            format!("\"api\";r={tokens};t={}", 3 - tokens).as_str()
        );
    }
    let shed = call(&mut route, "any").await;
    assert_eq!(shed.status(), 429);
    assert_eq!(shed.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(shed.headers()["retry-after"], "1");
}

#[tokio::test(start_paused = true)]
async fn the_stack_error_describes_the_rejection() {
    let layer =
        ReliabilityLayer::from_config_as(&policy(BY_API_KEY), "api", tower_prism::HttpServer)
            .unwrap();
    let mut svc =
        ServiceBuilder::new()
            .reliability(layer)
            .service(service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(()))
            }));
    let request = || {
        Request::builder()
            .header("x-api-key", "k")
            .body(())
            .unwrap()
    };
    for _ in 0..2 {
        svc.ready().await.unwrap().call(request()).await.unwrap();
    }
    let error = svc
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap_err();
    assert!(error.is::<RateLimitRejection>());
    let error = Error::from_box(error);
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(5)));
    let info = error.rate_limit().expect("the limiter's state");
    assert_eq!((info.limit, info.remaining), (2, 0));
    assert_eq!(info.reset, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn every_503_says_when_to_retry() {
    let layer = ReliabilityLayer::from_config_as(
        &policy("[policy.api.concurrency_limit]\ninitial_limit = 1\nmin_limit = 1\nmax_limit = 1"),
        "api",
        tower_prism::HttpServer,
    )
    .unwrap();
    let (release, wait) = tokio::sync::watch::channel(false);
    let svc = ServiceBuilder::new()
        .http_errors()
        .reliability(layer)
        .service(service_fn(move |_req: Request<()>| {
            let mut wait = wait.clone();
            async move {
                let _ = wait.wait_for(|go| *go).await;
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        }));
    let busy = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    let shed = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert!(
        shed.headers().get("ratelimit").is_none(),
        "not a rate limit"
    );
    assert!(shed.headers().get("x-ratelimit-after").is_none());
    release.send(true).unwrap();
    assert_eq!(busy.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[test]
fn a_profile_that_cannot_read_keys_refuses_a_key_at_build_and_reload() {
    let keyed = policy(BY_API_KEY);
    let error = ReliabilityLayer::from_config(&keyed, "api").unwrap_err();
    assert_eq!(error.field(), Some("policy.api.rate_limit.key"));

    let plain = policy("[policy.api.rate_limit]\nrate = 2");
    let layer = ReliabilityLayer::from_config(&plain, "api").unwrap();
    let error = layer.reconfigure(keyed.get("api").unwrap()).unwrap_err();
    assert_eq!(error.field(), Some("policy.api.rate_limit.key"));
}

/// `headers` on a profile whose rate limit writes no headers (the gRPC ones, whose
/// rejections are statuses; `Generic`) is refused naming `rate_limit.headers`, at build
/// and at reload. It was accepted and never written.
#[test]
fn a_profile_that_writes_no_headers_refuses_them_at_build_and_reload() {
    fn refused<P: tower_prism::Profile>(profile: P) {
        let with_headers = policy("[policy.api.rate_limit]\nrate = 2\nheaders = true");
        let error =
            ReliabilityLayer::from_config_as(&with_headers, "api", profile.clone()).unwrap_err();
        assert_eq!(
            error.field(),
            Some("policy.api.rate_limit.headers"),
            "{error}"
        );
        assert!(
            error.to_string().contains("no rate-limit headers"),
            "{error}"
        );

        let plain = policy("[policy.api.rate_limit]\nrate = 2");
        let layer = ReliabilityLayer::from_config_as(&plain, "api", profile).unwrap();
        let error = layer
            .reconfigure(with_headers.get("api").unwrap())
            .unwrap_err();
        assert_eq!(
            error.field(),
            Some("policy.api.rate_limit.headers"),
            "{error}"
        );
    }
    refused(tower_prism::Grpc::new());
    refused(tower_prism::GrpcServer);
    refused(tower_prism::Generic);
}

#[test]
fn a_reload_keeps_the_key_and_may_switch_headers() {
    let layer =
        ReliabilityLayer::from_config_as(&policy(BY_API_KEY), "api", tower_prism::Http).unwrap();
    let rekeyed = policy(
        r#"
        [policy.api.rate_limit]
        rate = 2
        period = "10s"
        key = "peer_ip"
        "#,
    );
    let error = layer.reconfigure(rekeyed.get("api").unwrap()).unwrap_err();
    assert_eq!(error.field(), Some("policy.api.rate_limit.key"));
    let with_headers = policy(&format!("{BY_API_KEY}\nheaders = true"));
    layer.reconfigure(with_headers.get("api").unwrap()).unwrap();
    let bad = "[policy.api.rate_limit]\nrate = 2\nkey = { path_prefix = 0 }";
    let error = ReliabilityConfig::from_toml(bad).unwrap_err();
    assert_eq!(error.field(), Some("policy.api.rate_limit.key.path_prefix"));
}

#[tokio::test(start_paused = true)]
async fn axum_peer_and_matched_route_key_the_bucket() {
    use axum::extract::ConnectInfo;
    use axum::routing::get;

    let layer = ReliabilityLayer::from_config_as(
        &policy(
            r#"
            [policy.api.rate_limit]
            rate = 1
            period = "10s"
            key = ["route", "peer_ip"]
            "#,
        ),
        "api",
        tower_prism::HttpServer,
    )
    .unwrap();
    let app = axum::Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/orders/{id}", get(|| async { "order" }))
        .route_layer(ServiceBuilder::new().http_errors().reliability(layer));
    let get = |path: &str, peer: &str| {
        let mut request = Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let addr: SocketAddr = format!("{peer}:5000").parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(addr));
        request
    };
    let status = |request: Request<axum::body::Body>| {
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap().status().as_u16() }
    };
    assert_eq!(status(get("/users/1", "192.0.2.1")).await, 200);
    assert_eq!(
        status(get("/users/2", "192.0.2.1")).await,
        429,
        "one route, any id"
    );
    assert_eq!(
        status(get("/orders/1", "192.0.2.1")).await,
        200,
        "another route"
    );
    assert_eq!(
        status(get("/users/3", "192.0.2.2")).await,
        200,
        "another peer"
    );
}
