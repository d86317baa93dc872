//! What the README and the guide claim beyond their Rust examples (which run as doctests of
//! the facade, `ReadmeDoctests` in src/lib.rs): the config example parses and builds (and
//! its commented-out game day reloads), a server refuses it for its retry stage, the hyper
//! client retries a 503, and the guide's config example and Redis settings build.

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

#[test]
fn the_readme_config_example_parses_and_builds() {
    let blocks = readme_blocks("toml");
    let config = ReliabilityConfig::from_toml(blocks[0]).unwrap();
    let policy = config.get("payments").unwrap();
    assert!(policy.rate_limit.is_some() && policy.circuit_breaker.is_some());
    assert!(policy.retry.is_some() && policy.balance.is_some());
    assert!(policy.deadline.is_some() && policy.fault.is_none());
    // an HTTP client's: its deadline header is refused by `Generic`
    let policies = Policies::with_profile(&config, tower_prism::Http).unwrap();

    // the commented-out game day is a reload the running policies take, and undo
    let game_day: String = blocks[0]
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(table) if table.starts_with("[policy.payments.fault]") => table,
            Some(field) if field.starts_with("error") || field.starts_with("latency") => field,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    policies.reload_toml(&game_day).unwrap();
    let payments = policies.get("payments").unwrap();
    assert!(payments.snapshot().fault.is_some_and(|f| f.enabled));
    policies.reload(&config).unwrap();
    assert!(payments.snapshot().fault.is_none());
}

mod server_policy {
    use tower_prism::{HttpServer, ReliabilityConfig, ReliabilityLayer};

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

/// The guide's config example, every stage table with its comments, builds the policies of
/// an HTTP client (its status fault needs an HTTP profile).
#[test]
fn the_guides_config_example_builds_for_an_http_client() {
    let guide = include_str!("../docs/GUIDE.md");
    let start = guide
        .find("```toml\n")
        .expect("the guide has a config example")
        + 8;
    let end = start + guide[start..].find("```").expect("the block ends");
    let config = ReliabilityConfig::from_toml(&guide[start..end]).unwrap();
    let policy = config.get("payments").unwrap();
    assert!(policy.deadline.is_some() && policy.fault.is_some());
    Policies::with_profile(&config, tower_prism::Http).unwrap();
    assert!(
        Policies::new(&config).is_err(),
        "Generic refuses a status fault"
    );
}
