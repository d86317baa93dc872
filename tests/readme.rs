//! The README's examples are real code: its config example parses and builds, and every line
//! of its Rust examples appears in this file (whitespace and `//` comments aside), where it
//! is compiled and, except for the Redis one, run.

mod support;

use tower_prism::{Policies, ReliabilityConfig};

/// The README's fenced blocks of one language, in order.
fn readme_blocks(lang: &str) -> Vec<&'static str> {
    let readme = include_str!("../README.md");
    let fence = format!("```{lang}\n");
    let mut blocks = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```").expect("the block ends");
        blocks.push(&body[..end]);
        rest = &body[end..];
    }
    blocks
}

/// A line with its `//` comment and all whitespace removed.
fn normalized(line: &str) -> String {
    let code = line.find("//").map_or(line, |i| &line[..i]);
    code.split_whitespace().collect()
}

#[test]
fn the_readme_config_example_parses_and_builds() {
    let blocks = readme_blocks("toml");
    let config = ReliabilityConfig::from_toml(blocks[0]).unwrap();
    let policy = config.get("payments").unwrap();
    assert!(policy.rate_limit.is_some() && policy.circuit_breaker.is_some());
    assert!(policy.retry.is_some() && policy.balance.is_some());
    Policies::new(&config).unwrap();
}

#[test]
fn every_line_of_the_readme_rust_examples_is_compiled_here() {
    let here: String = include_str!("readme.rs").lines().map(normalized).collect();
    let blocks = readme_blocks("rust");
    assert!(blocks.len() >= 4, "found {} rust blocks", blocks.len());
    for block in blocks {
        for line in block.lines().map(normalized).filter(|l| !l.is_empty()) {
            assert!(
                here.contains(&line),
                "README line not in tests/readme.rs: {line}"
            );
        }
    }
}

/// The checker itself: a line that is not here is caught.
#[test]
fn a_readme_line_missing_here_would_be_caught() {
    let here: String = include_str!("readme.rs").lines().map(normalized).collect();
    let absent = format!("let x = tower_prism::{}();", "not_a_function");
    assert!(!here.contains(&normalized(&absent)));
    assert!(here.contains(&normalized("let policy = ReliabilityLayer::builder()")));
}

mod usage {
    use std::time::Duration;
    use tower::{service_fn, ServiceBuilder, ServiceExt};
    use tower_prism::{breaker::BreakerConfig, limit::rate::RateLimitConfig, retry::RetryConfig};
    use tower_prism::{Error, ReliabilityLayer, ServiceBuilderExt};

    async fn call_upstream(request: String) -> Result<String, std::io::Error> {
        Ok(request.to_uppercase())
    }

    #[tokio::test]
    async fn the_readme_usage_example_runs() -> Result<(), Box<dyn std::error::Error>> {
        let request = "hello".to_owned();
        let policy = ReliabilityLayer::builder()
            .name("payments") // the `name` label of every metric
            .rate_limit(
                RateLimitConfig::builder()
                    .rate(100)
                    .period(Duration::from_secs(1))
                    .build()?,
            )
            .circuit_breaker(BreakerConfig::default()) // 50 % failures over 100 calls trips it
            .retry(RetryConfig::default()) // 3 attempts, jittered backoff, budget
            .build()?;
        let svc = ServiceBuilder::new()
            .reliability(policy)
            .service(service_fn(call_upstream));
        let reply = svc.oneshot(request).await.map_err(Error::from_box)?; // err.kind(): RateLimited, CircuitOpen...
        assert_eq!(reply, "HELLO");
        Ok(())
    }
}

mod axum_quick_start {
    use axum::body::Body;
    use axum::{routing::get, Router};
    use http::{Request, StatusCode};
    use tower::ServiceBuilder;
    use tower::ServiceExt;
    use tower_prism::{HttpServer, ReliabilityConfig, ReliabilityLayer, ServiceBuilderExt};

    async fn pay() -> &'static str {
        "paid"
    }

    fn app() -> Result<Router, Box<dyn std::error::Error>> {
        let config = ReliabilityConfig::from_file("reliability.toml")?; // [policy.payments] ...
        let payments = ReliabilityLayer::from_config_as(&config, "payments", HttpServer)?;
        let app = Router::new().route(
            "/pay",
            get(pay).route_layer(ServiceBuilder::new().http_errors().reliability(payments)),
        ); // shed requests get 429 + Retry-After, an open circuit 503, no HandleErrorLayer needed
        Ok(app)
    }

    #[tokio::test]
    async fn the_readme_axum_example_serves_and_sheds() {
        // The example reads `reliability.toml` from the working directory: give it one.
        let dir = std::env::temp_dir().join(format!("prism-readme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("reliability.toml"),
            "[policy.payments.rate_limit]\nrate = 1\nperiod = \"1m\"\n",
        )
        .unwrap();
        std::env::set_current_dir(&dir).unwrap();
        let app = app().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let get = || Request::get("/pay").body(Body::empty()).unwrap();
        let first = app.clone().oneshot(get()).await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let second = app.clone().oneshot(get()).await.unwrap();
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(second.headers().contains_key(http::header::RETRY_AFTER));
    }

    /// As the README says: the page's config (which has a retry stage) is refused for a server.
    #[test]
    fn a_server_policy_with_a_retry_stage_is_refused() {
        let config = ReliabilityConfig::from_toml(super::readme_blocks("toml")[0]).unwrap();
        let err = ReliabilityLayer::from_config_as(&config, "payments", HttpServer).unwrap_err();
        assert!(err.to_string().contains("retry"), "{err}");
    }
}

mod hyper_client_quick_start {
    use bytes::Bytes;
    use http::{Request, Uri};
    use http_body_util::Full;
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    use tower::{Layer, ServiceExt};
    use tower_prism::retry::{replayable, ReplayBody, RetryConfig};
    use tower_prism::{breaker::BreakerConfig, ReliabilityLayer};

    use super::support::Upstream;

    async fn get(uri: Uri) -> Result<http::StatusCode, Box<dyn std::error::Error + Send + Sync>> {
        let policy = ReliabilityLayer::builder()
            .http() // status-based classification, Retry-After
            .name("inventory")
            .circuit_breaker(BreakerConfig::default())
            .retry(RetryConfig::default()) // idempotent requests only
            .build()?;
        let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
        let client = policy.layer(client);
        let req = replayable(Request::get(uri).body(Full::new(Bytes::new()))?, 64 * 1024);
        let res = client.clone().oneshot(req).await?; // a 503 is retried; a POST is sent once
        Ok(res.status())
    }

    #[tokio::test]
    async fn the_readme_hyper_client_example_retries_a_503() {
        let up = Upstream::start("inventory").await;
        up.fail_next(1);
        let uri: Uri = format!("http://{}/items", up.addr()).parse().unwrap();
        assert_eq!(get(uri).await.unwrap(), 200);
        assert_eq!(up.requests(), 2, "the 503 was retried once");
    }
}

#[cfg(feature = "redis")]
mod redis_settings {
    use tower_prism::limit::redis::{RedisConfig, RedisRateLimitLayer};

    struct Req {
        api_key: String,
    }

    fn layer(text: String) -> Result<(), Box<dyn std::error::Error>> {
        let cfg: RedisConfig = toml::from_str(&text)?;
        let layer = RedisRateLimitLayer::builder(cfg)
            .name("api")
            .build()?
            .key_fn(|req: &Req| req.api_key.clone());
        let _ = layer;
        Ok(())
    }

    /// The README's settings (building a layer connects to nothing yet), and a bad URL.
    #[tokio::test]
    async fn the_readme_redis_settings_build_a_layer() {
        let settings = r#"
            url = "redis://10.0.0.5:6379/"
            rate = 1000
            burst = 100
            pre_allot = 8
            timeout = "20ms"
            failure_policy = { local_fallback = { instances = 20 } }
        "#;
        layer(settings.to_owned()).unwrap();
        let bad = settings.replace("redis://10.0.0.5:6379/", "http://nowhere");
        let err = layer(bad).unwrap_err().to_string();
        assert!(err.contains("url"), "{err}");
    }
}
