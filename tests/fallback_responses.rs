//! The fallback stage answering responses, not only errors (Polly's `ShouldHandle` on
//! results): the configured HTTP answer by status (`on_status`), in a policy and reloaded;
//! a code-given answer by predicate (`on_response`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::Mutex;

use http::header::RETRY_AFTER;
use http::{Response, StatusCode};
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_prism::fallback::{FailedResponse, FallbackCause, FallbackConfig, FallbackLayer};
use tower_prism::{ErrorKind, ReliabilityConfig, ReliabilityLayer};
use tower_prism_testkit::{allocations_per_call, CountingAlloc, Echo};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// An upstream answering each request with the status it carries in its body.
fn upstream() -> impl Service<u16, Response = Response<String>, Error = Infallible> + Clone {
    service_fn(|status: u16| async move {
        let mut response = Response::new(format!("upstream {status}"));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok::<_, Infallible>(response)
    })
}

fn degraded(on_status: &[u16]) -> FallbackConfig {
    FallbackConfig::builder()
        .on_status(on_status.iter().copied())
        .on([ErrorKind::CircuitOpen])
        .status(200)
        .header("x-degraded", "1")
        .body("cached")
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_listed_status_is_answered_and_others_pass_through() {
    let layer = FallbackLayer::from_config(&degraded(&[502, 503])).unwrap();
    let handle = layer.handle().clone();
    let svc = layer.layer(upstream());

    for status in [200, 404, 500, 504] {
        let response = svc.clone().oneshot(status).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "passed through");
        assert_eq!(response.into_body(), format!("upstream {status}"));
    }
    for status in [502, 503] {
        let response = svc.clone().oneshot(status).await.unwrap();
        assert_eq!(response.status(), 200, "answered");
        assert_eq!(response.headers()["x-degraded"], "1");
        let cause = *response.extensions().get::<FallbackCause>().unwrap();
        assert_eq!(cause.kind(), ErrorKind::Inner);
        assert_eq!(cause.status(), Some(StatusCode::from_u16(status).unwrap()));
        assert_eq!(response.into_body(), "cached");
    }
    // Counted as answers to the upstream's failure, although `on` lists only
    // `circuit_open`: the statuses are asked for by themselves.
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.answered_for(ErrorKind::Inner), 2);
    assert_eq!(snapshot.passed_on, 0);
}

/// A 503 answering an upstream's 503 passes its `Retry-After` on: a client told to come
/// back in 2 minutes by the upstream is not told 1 second by the fallback.
#[tokio::test]
async fn a_shed_response_answered_keeps_its_retry_after() {
    let config = FallbackConfig::builder()
        .on_status([503])
        .status(503)
        .body("busy")
        .build()
        .unwrap();
    let layer = FallbackLayer::from_config(&config).unwrap();
    let upstream = |retry_after: Option<&'static str>| {
        service_fn(move |_: ()| async move {
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            if let Some(value) = retry_after {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, value.parse().unwrap());
            }
            Ok::<_, Infallible>(response)
        })
    };
    let response = layer
        .layer(upstream(Some("120")))
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(response.headers()[RETRY_AFTER], "120");
    assert_eq!(response.into_body(), "busy");
    let response = layer.layer(upstream(None)).oneshot(()).await.unwrap();
    assert_eq!(response.headers()[RETRY_AFTER], "1", "no hint: the default");
}

#[tokio::test]
async fn an_error_still_answers_by_its_kind_and_its_cause_has_no_status() {
    let layer = FallbackLayer::from_config(&degraded(&[503])).unwrap();
    let open = service_fn(|_: u16| async {
        Err::<Response<String>, BoxError>(Box::new(tower_prism::breaker::Error::CircuitOpen {
            retry_after: std::time::Duration::from_secs(1),
        }))
    });
    let response = layer.layer(open).oneshot(0).await.unwrap();
    let cause = *response.extensions().get::<FallbackCause>().unwrap();
    assert_eq!(cause.kind(), ErrorKind::CircuitOpen);
    assert_eq!(cause.status(), None);
}

#[tokio::test]
async fn a_reload_changes_the_statuses_and_a_bad_one_changes_nothing() {
    let layer = FallbackLayer::from_config(&degraded(&[503])).unwrap();
    let handle = layer.handle().clone();
    let svc = layer.layer(upstream());
    assert_eq!(svc.clone().oneshot(502).await.unwrap().status(), 502);

    handle.reconfigure(&degraded(&[502])).unwrap();
    assert_eq!(svc.clone().oneshot(502).await.unwrap().status(), 200);
    assert_eq!(svc.clone().oneshot(503).await.unwrap().status(), 503);

    let mut bad = degraded(&[502]);
    bad.on_status.push(700);
    bad.body = "other".into();
    let error = handle.reconfigure(&bad).unwrap_err();
    assert_eq!(error.field(), "on_status");
    assert_eq!(handle.config(), degraded(&[502]), "all or nothing");
    let still = svc.clone().oneshot(502).await.unwrap();
    assert_eq!(still.into_body(), "cached");

    handle.reconfigure(&degraded(&[])).unwrap();
    assert_eq!(svc.clone().oneshot(502).await.unwrap().status(), 502);
}

#[test]
fn a_status_outside_100_to_599_is_a_typed_error() {
    for bad in [0, 99, 600, 1000] {
        let error = FallbackConfig::builder()
            .on_status([503, bad])
            .build()
            .unwrap_err();
        assert_eq!(error.field(), "on_status", "{bad}");
    }
    let from_toml: FallbackConfig = toml::from_str("on_status = [502, 503, 504]").unwrap();
    assert_eq!(from_toml.on_status, [502, 503, 504]);
    from_toml.validate().unwrap();
}

#[tokio::test]
async fn a_policy_answers_its_upstreams_5xx_after_the_stages_below() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.catalog.fallback]
        on_status = [503]
        status = 200
        body = "[]"
        "#,
    )
    .unwrap();
    let policy =
        ReliabilityLayer::from_config_as(&config, "catalog", tower_prism::HttpServer).unwrap();
    let fallback = policy.fallback().unwrap();
    let svc = ServiceBuilder::new()
        .layer(fallback)
        .layer(policy.clone())
        .service(service_fn(|request: http::Request<String>| async move {
            let status = request.body().parse::<u16>().unwrap();
            let mut response = Response::new(String::from("fresh"));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(response)
        }));
    let call = |status: &str| svc.clone().oneshot(http::Request::new(status.to_string()));
    assert_eq!(call("200").await.unwrap().into_body(), "fresh");
    assert_eq!(call("503").await.unwrap().into_body(), "[]");
    assert_eq!(
        policy
            .snapshot()
            .fallback
            .unwrap()
            .answered_for(ErrorKind::Inner),
        1
    );
}

#[tokio::test]
async fn a_code_given_answer_picks_its_responses_with_a_predicate() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let errors = seen.clone();
    let layer = FallbackLayer::builder(FallbackConfig::default())
        .on([ErrorKind::Timeout])
        .answer_with(move |error: &tower_prism::Error| {
            let failed = error.get_ref().downcast_ref::<FailedResponse>().copied();
            errors.lock().unwrap().push((error.kind(), failed));
            vec!["cached"]
        })
        .on_response(|items: &Vec<&'static str>| items.is_empty())
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|n: usize| async move {
        Ok::<_, Infallible>(vec!["fresh"; n])
    }));
    assert_eq!(svc.clone().oneshot(2).await.unwrap(), ["fresh", "fresh"]);
    assert_eq!(svc.clone().oneshot(0).await.unwrap(), ["cached"]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, ErrorKind::Inner);
    assert_eq!(
        seen[0].1.unwrap().status(),
        None,
        "a predicate's pick has no status"
    );
    assert_eq!(layer.handle().snapshot().answered_for(ErrorKind::Inner), 1);
}

#[test]
fn a_response_passing_through_allocates_nothing() {
    let mut http = ServiceBuilder::new()
        .layer(FallbackLayer::from_config(&degraded(&[502, 503])).unwrap())
        .service(Echo);
    let response = || Response::new(String::new());
    assert_eq!(allocations_per_call(&mut http, |_| response(), 10, 1000), 0);
}
