//! The breaker and retry stages of the whole stack against real hyper servers on 127.0.0.1
//! with injected faults: trips and recovery, retries within the budget, retries that move
//! to another endpoint, HTTP replay rules, and hot reload of both stages.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{EndpointError, Get, HttpEndpoint, Reply, Upstream};
use tower::{Layer, ServiceExt};
use tower_prism::balance::{BalanceConfig, Strategy};
use tower_prism::breaker::{BreakerConfig, State, Window};
use tower_prism::retry::replayable;
use tower_prism::retry::{Backoff, BudgetConfig, ReplayBody, RetryConfig};
use tower_prism::{Clock, Outcome};
use tower_prism::{ConfigFileError, Error, ErrorKind, ReliabilityConfig, ReliabilityLayer};

/// 5xx replies are retryable failures, like transport errors.
fn classify(result: Result<&Reply, &EndpointError>) -> Outcome {
    match result {
        Ok(reply) if reply.status.is_server_error() => Outcome::RETRYABLE,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::RETRYABLE,
    }
}

fn quick_retries(max_attempts: u32) -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(max_attempts)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_breaker_opens_on_an_error_burst_fails_fast_and_recovers() {
    let up = Upstream::start("up").await;
    let breaker = BreakerConfig::builder()
        .window(Window::Count { size: 10 })
        .minimum_calls(5)
        .failure_rate_threshold(0.5)
        .wait_duration(Duration::from_millis(200))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    let layer = ReliabilityLayer::builder()
        .name("trip")
        .classify(classify)
        .circuit_breaker(breaker)
        .build()
        .unwrap();
    let service = layer.layer(HttpEndpoint::new(up.addr()));

    for _ in 0..5 {
        assert_eq!(service.clone().oneshot(Get("/")).await.unwrap().status, 200);
    }
    up.set_failing(true);
    let (mut errors, mut rejected) = (0, 0);
    for _ in 0..20 {
        match service.clone().oneshot(Get("/")).await {
            Ok(reply) => {
                assert_eq!(reply.status, 500);
                errors += 1;
            }
            Err(e) => {
                let e = Error::from_box(e);
                assert_eq!(e.kind(), ErrorKind::CircuitOpen);
                assert_eq!(e.status(), 503);
                assert!(e
                    .retry_after()
                    .is_some_and(|d| d <= Duration::from_millis(200)));
                rejected += 1;
            }
        }
    }
    // 5 good + 5 bad calls fill the window at a failure rate of 0.5: it trips on the 10th.
    assert_eq!(
        (errors, rejected),
        (5, 15),
        "every request ended, counted once"
    );
    assert_eq!(
        up.requests(),
        10,
        "rejected calls never reached the upstream"
    );
    let snapshot = layer.snapshot();
    assert_eq!(snapshot.circuit_breaker.unwrap().state, State::Open);
    assert!(
        snapshot.circuit_open,
        "the breaker told the shared health signal"
    );

    // The upstream recovers; after the open wait one probe closes the circuit again.
    up.recover();
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..10 {
        assert_eq!(service.clone().oneshot(Get("/")).await.unwrap().status, 200);
    }
    assert_eq!(
        layer.snapshot().circuit_breaker.unwrap().state,
        State::Closed
    );
    assert!(!layer.snapshot().circuit_open);
    assert_eq!(up.requests(), 20);
}

#[tokio::test]
async fn retries_hide_a_transient_burst_and_stay_within_the_budget() {
    let up = Upstream::start("up").await;
    let mut retry = quick_retries(3);
    retry.budget = BudgetConfig::builder()
        .ratio(0.1)
        .min_per_second(1)
        .build()
        .unwrap();
    let layer = ReliabilityLayer::builder()
        .name("budget")
        .classify(classify)
        .retry(retry)
        .build()
        .unwrap();
    let service = layer.layer(HttpEndpoint::new(up.addr()));

    // Two errors, then the third attempt answers.
    up.fail_next(2);
    assert_eq!(service.clone().oneshot(Get("/")).await.unwrap().status, 200);
    assert_eq!(up.requests(), 3);

    // A hard outage: 50 calls may retry only 10 % of the first attempts of the budget's 10 s
    // window plus a floor of 1/s over that window (~15 in all), where without a budget they
    // would retry 100 times; a 5xx that runs out of retries comes back
    // as the response it is.
    up.set_failing(true);
    for _ in 0..50 {
        let reply = service.clone().oneshot(Get("/")).await.unwrap();
        assert_eq!(reply.status, 500);
    }
    let retries = up.requests() - 3 - 50;
    assert!(
        (1..=16).contains(&retries),
        "{retries} retries for 51 first attempts at a 10 % budget"
    );
    let snapshot = layer.snapshot().retry.unwrap();
    assert!(snapshot.budget_available < 1.0, "{snapshot:?}");
}

#[tokio::test]
async fn a_retry_goes_to_another_endpoint() {
    let ups = [Upstream::start("a").await, Upstream::start("b").await];
    ups[0].set_failing(true);
    let mut balance = BalanceConfig::default();
    balance.strategy = Strategy::RoundRobin;
    balance.outlier.enabled = false; // only the retry stage deals with the bad endpoint
    let layer = ReliabilityLayer::builder()
        .name("moves")
        .classify(classify)
        .retry({
            let mut retry = quick_retries(2);
            retry.budget = BudgetConfig::builder().enabled(false).build().unwrap();
            retry
        })
        .balance(balance)
        .build()
        .unwrap();
    let service = layer
        .layer_endpoints::<&'static str, HttpEndpoint, Get>(
            ups.iter().map(|u| (u.name(), HttpEndpoint::new(u.addr()))),
        )
        .unwrap();
    for _ in 0..20 {
        let reply = service.clone().oneshot(Get("/")).await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "b"));
    }
    assert_eq!(ups[1].requests(), 20);
    assert!(ups[0].requests() >= 1 && ups[0].requests() <= 20);
}

#[tokio::test]
async fn the_http_profile_retries_idempotent_requests_with_replayed_bodies() {
    let up = Upstream::start("h").await;
    up.set_error_status(503);
    let layer = ReliabilityLayer::builder()
        .http()
        .name("client")
        .retry(quick_retries(3))
        .build()
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    let service = layer.layer(client);
    let uri = format!("http://{}/", up.addr());
    let request = |method: &str, body: &'static str, limit: usize| {
        let req = Request::builder()
            .method(method)
            .uri(&uri)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        replayable(req, limit)
    };

    // GET: two 503s, then 200.
    up.fail_next(2);
    let res = service
        .clone()
        .oneshot(request("GET", "", 1024))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.requests(), 3);

    // POST is not idempotent: sent once, the 503 comes back as it is.
    up.fail_next(2);
    let res = service
        .clone()
        .oneshot(request("POST", "pay 10", 1024))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(up.requests(), 4);
    up.recover();

    // PUT with a body over the replay limit: sent once, whole.
    up.fail_next(1);
    let res = service
        .clone()
        .oneshot(request("PUT", "0123456789", 4))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(up.requests(), 5);

    // PUT within the limit: replayed.
    up.fail_next(1);
    let res = service
        .clone()
        .oneshot(request("PUT", "0123", 1024))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.requests(), 7);
}

/// A profile of one's own whose stack has no retry stage (`Retries = NoRetries`, as a
/// server profile declares) refuses a retry table though it keeps `can_retry`'s default:
/// the table was accepted, then `layer` hit a debug assertion (release builds dropped it).
#[test]
fn a_profile_of_ones_own_without_a_retry_stage_refuses_a_retry_table() {
    use tower_prism::deadline::AnyRequest;
    use tower_prism::fault::NoStatus;
    use tower_prism::limit::rate::{
        NoHeaders, RateLimitLayer, RateLimitLayerBuilder, SamePriority, UnitWeight, Unkeyed,
    };
    use tower_prism::retry::{CloneRequest, NoHint};
    use tower_prism::{ConfigError, DefaultClassifier, NoRetries, Profile};

    #[derive(Debug, Clone, Copy)]
    struct MyServer;
    impl Profile for MyServer {
        type Classify = DefaultClassifier;
        type Replay = CloneRequest;
        type Hint = NoHint;
        type Carrier = AnyRequest;
        type FaultStatus = NoStatus;
        type RateKey = Unkeyed;
        type RateHeaders = NoHeaders;
        type Retries = NoRetries;
        fn classify(&self) -> DefaultClassifier {
            DefaultClassifier
        }
        fn replay(&self) -> CloneRequest {
            CloneRequest
        }
        fn hint(&self) -> NoHint {
            NoHint
        }
        fn carrier(&self) -> AnyRequest {
            AnyRequest
        }
        fn fault_status(&self) -> NoStatus {
            NoStatus
        }
        fn rate_limit(
            &self,
            builder: RateLimitLayerBuilder,
        ) -> Result<RateLimitLayer<Unkeyed, SamePriority, UnitWeight, NoHeaders>, ConfigError>
        {
            builder.build()
        }
    }
    let err = ReliabilityLayer::builder()
        .profile(MyServer)
        .retry(RetryConfig::default())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry");
}

#[test]
fn a_server_profile_refuses_a_retry_stage() {
    let err = ReliabilityLayer::builder()
        .http_server()
        .retry(RetryConfig::default())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry");
    let ok = ReliabilityLayer::builder()
        .http_server()
        .circuit_breaker(BreakerConfig::default())
        .build();
    assert!(ok.is_ok());
}

#[tokio::test]
async fn breaker_and_retry_reload_and_a_window_change_is_refused_whole() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.api.rate_limit]
        rate = 10
        [policy.api.circuit_breaker]
        failure_rate_threshold = 0.5
        window = { type = "count", size = 20 }
        [policy.api.retry]
        max_attempts = 2
        "#,
    )
    .unwrap();
    let layer = ReliabilityLayer::from_config(&config, "api").unwrap();
    assert_eq!(layer.snapshot().retry.unwrap().max_attempts, 2);

    let mut policy = config.get("api").unwrap().clone();
    policy.retry.as_mut().unwrap().max_attempts = 5;
    policy.circuit_breaker = Some(
        BreakerConfig::builder()
            .failure_rate_threshold(0.9)
            .window(Window::Count { size: 20 })
            .build()
            .unwrap(),
    );
    layer.reconfigure(&policy).unwrap();
    assert_eq!(layer.snapshot().retry.unwrap().max_attempts, 5);

    // A new window cannot be applied to a running breaker: refused before anything changes.
    let mut bad = policy.clone();
    bad.retry.as_mut().unwrap().max_attempts = 7;
    bad.rate_limit.as_mut().unwrap().rate = 99;
    bad.circuit_breaker = Some(
        BreakerConfig::builder()
            .window(Window::Count { size: 50 })
            .build()
            .unwrap(),
    );
    let err = layer.reconfigure(&bad).unwrap_err();
    assert!(matches!(err, ConfigFileError::Invalid(_)));
    assert_eq!(err.field(), Some("policy.api.circuit_breaker.window"));
    assert_eq!(layer.snapshot().retry.unwrap().max_attempts, 5);
    assert_eq!(layer.snapshot().rate_limit.unwrap().rate_per_second, 10.0);
    // Nor a new clock.
    bad.circuit_breaker = Some(
        BreakerConfig::builder()
            .window(Window::Count { size: 20 })
            .clock(Clock::Tsc)
            .build()
            .unwrap(),
    );
    let err = layer.reconfigure(&bad).unwrap_err();
    assert_eq!(err.field(), Some("policy.api.circuit_breaker.clock"));
    assert_eq!(layer.snapshot().retry.unwrap().max_attempts, 5);
    assert_eq!(layer.snapshot().rate_limit.unwrap().rate_per_second, 10.0);

    // Bad values are typed errors naming the field, for the breaker as for every stage.
    let err =
        ReliabilityConfig::from_toml("[policy.api.circuit_breaker]\nfailure_rate_threshold = 1.5")
            .unwrap_err();
    assert!(matches!(err, ConfigFileError::Invalid(_)), "{err:?}");
    assert_eq!(
        err.field(),
        Some("policy.api.circuit_breaker.failure_rate_threshold")
    );
    assert!(err.to_string().contains("= 1.5"), "{err}");
    let err = ReliabilityConfig::from_toml("[policy.api.retry]\nmax_attempts = 0").unwrap_err();
    assert_eq!(err.field(), Some("policy.api.retry.max_attempts"));
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_caps_calls_in_flight_and_reloads() {
    use tower::{service_fn, BoxError};
    use tower_prism::limit::concurrency::ConcurrencyConfig;

    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.api.rate_limit]
        rate = 1000
        [policy.api.concurrency_limit]
        initial_limit = 3
        min_limit = 3
        max_limit = 3
        "#,
    )
    .unwrap();
    let layer = ReliabilityLayer::from_config(&config, "api").unwrap();
    let service = layer.layer(service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, BoxError>(())
    }));
    let burst = |n: usize| {
        let calls: Vec<_> = (0..n)
            .map(|_| tokio::spawn(service.clone().oneshot(())))
            .collect();
        async move {
            let (mut ok, mut limited) = (0, 0);
            for call in calls {
                match call.await.unwrap() {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        let e = Error::from_box(e);
                        assert_eq!(e.kind(), ErrorKind::ConcurrencyLimited);
                        assert_eq!(e.status(), 503);
                        limited += 1;
                    }
                }
            }
            (ok, limited)
        }
    };
    assert_eq!(
        burst(5).await,
        (3, 2),
        "three in flight, two refused at once"
    );
    let snapshot = layer.snapshot().concurrency_limit.unwrap();
    assert_eq!((snapshot.limit, snapshot.in_flight), (3, 0));

    let mut policy = config.get("api").unwrap().clone();
    policy.concurrency_limit = Some(ConcurrencyConfig::fixed(5));
    layer.reconfigure(&policy).unwrap();
    assert_eq!(burst(5).await, (5, 0));

    // Removing the stage from the running stack is refused.
    policy.concurrency_limit = None;
    assert!(matches!(
        layer.reconfigure(&policy),
        Err(ConfigFileError::ShapeChanged {
            stage: "concurrency_limit",
            ..
        })
    ));
}
