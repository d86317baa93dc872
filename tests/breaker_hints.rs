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

/// An upstream shedding every call: 503 with `Retry-After: 2`.
async fn shed_for_two_seconds(
    _: http::Request<ReplayBody<String>>,
) -> Result<http::Response<()>, BoxError> {
    Ok(http::Response::builder()
        .status(503)
        .header(http::header::RETRY_AFTER, "2")
        .body(())
        .unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_sets_the_breakers_open_wait() {
    let config = ReliabilityConfig::from_toml(BREAKER_ONLY).unwrap();
    let layer = ReliabilityLayer::from_config_as(&config, "x", Http).unwrap();
    let mut svc = layer.layer(service_fn(shed_for_two_seconds));
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

/// A breaker, a retry and a default-free upstream answering every call 503 with
/// `Retry-After: 2`, called by clients that give up after 1 s: the retry waits out the
/// upstream's 2 s, so no call ever ends below the breaker.
fn shedding_policy() -> impl Service<
    http::Request<ReplayBody<String>>,
    Response = http::Response<()>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    let config = ReliabilityConfig::from_toml(
        "[policy.x.circuit_breaker]\nminimum_calls = 5\n[policy.x.retry]\n",
    )
    .unwrap();
    let layer = ReliabilityLayer::from_config_as(&config, "x", Http).unwrap();
    layer.layer(service_fn(shed_for_two_seconds))
}

/// The retry's first 503 with `Retry-After` tells the breaker above at once, with the
/// upstream's wait: the circuit opens after `minimum_calls` such calls, and the next
/// callers fail fast instead of joining the retry's 2 s wait past their own deadline. A
/// regression test: the breaker saw only cancelled calls and let every caller time out.
#[tokio::test(start_paused = true)]
async fn a_retry_waiting_out_retry_after_tells_the_breaker_at_once() {
    let svc = shedding_policy();
    let request = || http::Request::new(ReplayBody::new(String::new(), 1024));
    let callers: Vec<_> = (0..5)
        .map(|_| {
            let call = svc.clone().oneshot(request());
            tokio::spawn(tokio::time::timeout(Duration::from_secs(1), call))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let start = tokio::time::Instant::now();
    let rejection = svc.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
    let wait = open_for(&rejection);
    assert!(
        wait > Duration::from_millis(1900) && wait <= Duration::from_secs(2),
        "the upstream's 2 s, not the default 500 ms: {wait:?}"
    );
    for caller in callers {
        let gave_up = caller.await.unwrap();
        assert!(
            gave_up.is_err(),
            "the retry waits 2 s, past the caller's 1 s"
        );
    }
}

/// A caller that gives up while the retry below backs off after a failure (no hint) is a
/// failed call for the breaker, not a cancelled one: the circuit opens after
/// `minimum_calls` of them. A regression test: they were not counted at all.
#[tokio::test(start_paused = true)]
async fn a_caller_giving_up_during_a_retry_backoff_counts_as_a_failure() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.x.circuit_breaker]
        minimum_calls = 5
        [policy.x.retry]
        backoff = { kind = "fixed", base = "2s", jitter = "none" }
        "#,
    )
    .unwrap();
    let layer = ReliabilityLayer::from_config(&config, "x").unwrap();
    let svc = layer.layer(service_fn(|(): ()| async {
        Err::<(), BoxError>("upstream failed".into())
    }));
    for _ in 0..5 {
        let gave_up = tokio::time::timeout(Duration::from_secs(1), svc.clone().oneshot(())).await;
        assert!(gave_up.is_err());
    }
    let rejection = svc.clone().oneshot(()).await.unwrap_err();
    assert!(rejection.to_string().contains("circuit"), "{rejection}");
}
