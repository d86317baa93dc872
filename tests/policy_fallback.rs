//! A policy's `[fallback]` table: built with the policy, handed out by
//! `ReliabilityLayer::fallback()`, reconfigured by a reload, counted in the snapshot.

use http::{Request, Response};
use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
use tower_prism::{ConfigFileError, ErrorKind, HttpServer, ReliabilityConfig, ReliabilityLayer};

const POLICY: &str = r#"
    [policy.search.rate_limit]
    rate = 1
    period = "1m"
    [policy.search.fallback]
    on = ["rate_limited"]
    status = 200
    body = "cached"
"#;

async fn call(policy: &ReliabilityLayer<HttpServer>) -> Result<Response<String>, BoxError> {
    ServiceBuilder::new()
        .option_layer(policy.fallback())
        .layer(policy.clone())
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, BoxError>(Response::new("fresh".to_owned()))
        }))
        .oneshot(Request::new(String::new()))
        .await
}

#[tokio::test(start_paused = true)]
async fn a_policy_fallback_answers_its_kinds_and_follows_reloads() {
    let config = ReliabilityConfig::from_toml(POLICY).unwrap();
    let policy = ReliabilityLayer::from_config_as(&config, "search", HttpServer).unwrap();

    assert_eq!(call(&policy).await.unwrap().body(), "fresh");
    // the rate limit's one call a minute is spent: the fallback answers
    let answer = call(&policy).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.body(), "cached");

    let reloaded =
        ReliabilityConfig::from_toml(&POLICY.replace("\"cached\"", "\"stale\"")).unwrap();
    policy.reconfigure(&reloaded.policy["search"]).unwrap();
    assert_eq!(call(&policy).await.unwrap().body(), "stale");

    let snapshot = policy.snapshot();
    let fallback = snapshot.fallback.expect("the policy has a fallback");
    assert_eq!(fallback.answered, 2);
    assert_eq!(fallback.answered_for(ErrorKind::RateLimited), 2);
}

#[tokio::test(start_paused = true)]
async fn a_kind_not_listed_passes_through_and_the_table_cannot_come_and_go() {
    let config =
        ReliabilityConfig::from_toml(&POLICY.replace("rate_limited", "circuit_open")).unwrap();
    let policy = ReliabilityLayer::from_config_as(&config, "search", HttpServer).unwrap();
    call(&policy).await.unwrap();
    let err = tower_prism::Error::from_box(call(&policy).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::RateLimited);

    let without =
        ReliabilityConfig::from_toml("[policy.search.rate_limit]\nrate = 1\nperiod = \"1m\"\n")
            .unwrap();
    let refused = policy.reconfigure(&without.policy["search"]).unwrap_err();
    assert!(
        matches!(
            refused,
            ConfigFileError::ShapeChanged {
                stage: "fallback",
                ..
            }
        ),
        "{refused}"
    );
    assert!(policy.fallback().is_some());
}

#[test]
fn a_bad_fallback_table_names_its_field() {
    let err =
        ReliabilityConfig::from_toml(&POLICY.replace("status = 200", "status = 1000")).unwrap_err();
    assert_eq!(err.field(), Some("policy.search.fallback.status"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_429_fallback_answer_carries_the_limiters_headers() {
    let config = ReliabilityConfig::from_toml(
        &POLICY
            .replace("status = 200", "status = 429")
            .replace("body = \"cached\"", "body = \"slow down\""),
    )
    .unwrap();
    let policy = ReliabilityLayer::from_config_as(&config, "search", HttpServer).unwrap();
    call(&policy).await.unwrap();
    let answer = call(&policy).await.unwrap();
    assert_eq!(answer.status(), 429);
    assert_eq!(answer.body(), "slow down");
    // as `http_errors()` would answer the same rejection
    let headers = answer.headers();
    assert_eq!(headers["retry-after"], "60");
    assert_eq!(headers["x-ratelimit-limit"], "1");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert!(headers.contains_key("ratelimit-policy"), "{headers:?}");
    assert!(headers.contains_key("ratelimit"), "{headers:?}");
}
