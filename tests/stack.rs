//! Whole-stack tests against real hyper servers on 127.0.0.1 with injected faults.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{EndpointError, Get, HttpEndpoint, Reply, Upstream};
use tower::{service_fn, BoxError, Layer, ServiceBuilder, ServiceExt};
use tower_prism::balance::BalanceConfig;
use tower_prism::limit::rate::{Clock, RateLimitConfig};
use tower_prism::Outcome;
use tower_prism::{
    ConfigFileError, Error, ErrorKind, PolicyConfig, ReliabilityConfig, ReliabilityLayer,
    ServiceBuilderExt,
};

fn classify(result: Result<&Reply, &EndpointError>) -> Outcome {
    match result {
        Ok(reply) if reply.status.is_server_error() => Outcome::RETRYABLE,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::RETRYABLE,
    }
}

fn fast_ejection() -> BalanceConfig {
    let mut config = BalanceConfig::default();
    config.outlier.consecutive_failures = 3;
    config.outlier.base_ejection_time = Duration::from_secs(30);
    config.outlier.max_ejection_time = Duration::from_secs(30);
    config.outlier.max_ejection_percent = 67;
    config
}

#[tokio::test]
async fn a_dead_endpoint_is_ejected_and_traffic_moves() {
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    // Round robin, so the dead endpoint is surely tried (p2c may avoid a slow one for long).
    let mut config = fast_ejection();
    config.strategy = tower_prism::balance::Strategy::RoundRobin;
    let layer = ReliabilityLayer::builder()
        .name("moves")
        .balance(config)
        .build()
        .unwrap();
    let balance = layer
        .balancer::<&'static str, HttpEndpoint, Get>()
        .endpoints(ups.iter().map(|u| (u.name(), HttpEndpoint::new(u.addr()))))
        .classify(classify)
        .build()
        .unwrap();
    let handle = balance.handle().clone();
    let service = layer.balanced(balance);

    for _ in 0..30 {
        let reply = service.clone().oneshot(Get("/")).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    ups[1].kill();
    tokio::time::sleep(Duration::from_millis(20)).await; // let its connections close
    let mut failures = 0;
    for _ in 0..60 {
        if service.clone().oneshot(Get("/")).await.is_err() {
            failures += 1;
        }
    }
    // Exactly `consecutive_failures` calls went to the dead endpoint before its ejection.
    assert_eq!(failures, 3);
    let snapshot = handle.snapshot();
    let b = snapshot.endpoints.iter().find(|e| e.key == "b").unwrap();
    assert!(b.ejected && !b.healthy, "{b:?}");
    assert_eq!(snapshot.healthy(), 2);

    let before = [ups[0].requests(), ups[2].requests()];
    for _ in 0..40 {
        let reply = service.clone().oneshot(Get("/")).await.unwrap();
        assert_ne!(reply.body, "b");
    }
    let moved = ups[0].requests() + ups[2].requests() - before[0] - before[1];
    assert_eq!(moved, 40, "all traffic moved to the live endpoints");
}

#[tokio::test]
async fn an_error_burst_ejects_and_every_request_is_accounted_for() {
    let ups = [Upstream::start("a").await, Upstream::start("b").await];
    let layer = ReliabilityLayer::builder()
        .name("burst")
        .rate_limit(RateLimitConfig::new(10_000, Duration::from_secs(1)))
        .balance(fast_ejection())
        .build()
        .unwrap();
    let balance = layer
        .balancer::<&'static str, HttpEndpoint, Get>()
        .endpoints(ups.iter().map(|u| (u.name(), HttpEndpoint::new(u.addr()))))
        .classify(classify)
        .build()
        .unwrap();
    let service = layer.balanced(balance);
    ups[0].fail_next(1_000);

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // 20 waves of 10 concurrent requests.
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        for _ in 0..20 {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..10 {
                let (service, ok, failed) = (service.clone(), ok.clone(), failed.clone());
                tasks.spawn(async move {
                    match service.oneshot(Get("/")).await {
                        Ok(reply) if reply.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(_) | Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    })
    .await;
    assert!(done.is_ok(), "a request hung");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(ok + failed, 200, "every request ended");
    // The failing endpoint saw a handful of calls before it was ejected; the rest went to b.
    assert!(
        ups[0].errors() <= 20,
        "a answered {} errors",
        ups[0].errors()
    );
    assert_eq!(failed, ups[0].errors());
    assert_eq!(ups[1].requests(), ok);
}

#[tokio::test(start_paused = true)]
async fn overload_is_shed_at_the_configured_rate() {
    let calls = Arc::new(AtomicU64::new(0));
    let inner = {
        let calls = calls.clone();
        service_fn(move |_: ()| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, BoxError>("done") }
        })
    };
    // Builder calls in any order give the same stack.
    let layer = ReliabilityLayer::builder()
        .balance(BalanceConfig::default())
        .rate_limit({
            let mut c = RateLimitConfig::new(100, Duration::from_secs(1));
            c.burst = Some(10);
            c
        })
        .name("shed")
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .reliability(layer.clone())
        .service(inner);

    let (mut admitted, mut shed) = (0u64, 0u64);
    // 1000 requests per second for 3 seconds against 100/s with a burst of 10.
    for _ in 0..3000 {
        match service.clone().oneshot(()).await {
            Ok(_) => admitted += 1,
            Err(e) => {
                let e = Error::from_box(e);
                assert_eq!(e.kind(), ErrorKind::RateLimited);
                assert!(e
                    .retry_after()
                    .is_some_and(|d| d <= Duration::from_millis(10)));
                shed += 1;
            }
        }
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    assert_eq!(admitted + shed, 3000);
    assert!((300..=311).contains(&admitted), "admitted {admitted}");
    assert_eq!(
        calls.load(Ordering::Relaxed),
        admitted,
        "shed requests cost nothing below"
    );
}

/// `clock = "tsc"` from a config file reaches the running limiter: with tokio's clock
/// paused and advanced two minutes, a TSC limiter (1 per minute, burst 3) has not refilled,
/// where the same policy on tokio's clock, or on the default one (which finds tokio's clock
/// paused at its first reading), has.
#[tokio::test(start_paused = true)]
async fn a_policy_can_put_its_limiter_on_the_tsc_clock() {
    for (clock, refilled) in [("tokio", 2), ("tsc", 0), ("auto", 2)] {
        let config = ReliabilityConfig::from_toml(&format!(
            "[policy.api.rate_limit]\nrate = 1\nperiod = \"1m\"\nburst = 3\nclock = \"{clock}\"\n"
        ))
        .unwrap();
        let layer = ReliabilityLayer::from_config(&config, "api").unwrap();
        let service = layer.layer(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
        let mut admitted = 0;
        for _ in 0..10 {
            admitted += u32::from(service.clone().oneshot(()).await.is_ok());
        }
        assert_eq!(admitted, 3, "{clock}: the burst");
        tokio::time::advance(Duration::from_secs(120)).await;
        let mut later = 0;
        for _ in 0..10 {
            later += u32::from(service.clone().oneshot(()).await.is_ok());
        }
        assert_eq!(later, refilled, "{clock}: after two paused minutes");
    }
}

#[tokio::test(start_paused = true)]
async fn hot_reload_changes_running_limits_and_refuses_bad_configs() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.api.rate_limit]
        rate = 10
        period = "1s"
        "#,
    )
    .unwrap();
    let layer = ReliabilityLayer::from_config(&config, "api").unwrap();
    let service = layer.layer(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));

    async fn admitted_in_one_second<S>(service: &S) -> u64
    where
        S: tower::Service<(), Error = BoxError> + Clone,
    {
        let mut n = 0;
        for _ in 0..1000 {
            n += u64::from(service.clone().oneshot(()).await.is_ok());
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        n
    }
    let before = admitted_in_one_second(&service).await;
    assert!((10..=21).contains(&before), "{before}");

    // An invalid config is refused, names policy, stage and field, and changes nothing.
    let bad = ReliabilityConfig::from_toml("[policy.api.rate_limit]\nrate = 0");
    assert_eq!(bad.unwrap_err().field(), Some("policy.api.rate_limit.rate"));
    // Invalid on purpose (rate 0): built field by field, as the builder would refuse it.
    let mut policy = PolicyConfig::default();
    policy.rate_limit = Some(RateLimitConfig::new(0, Duration::from_secs(1)));
    let err = layer.reconfigure(&policy).unwrap_err();
    assert_eq!(err.field(), Some("policy.api.rate_limit.rate"));
    // Removing a stage from a running stack is refused too.
    let shrunk = PolicyConfig::default();
    assert!(matches!(
        layer.reconfigure(&shrunk),
        Err(ConfigFileError::ShapeChanged {
            stage: "rate_limit",
            ..
        })
    ));
    // So is a new clock for a running limiter (its buckets' times are on the old one).
    let tsc = PolicyConfig::builder()
        .rate_limit({
            let mut c = RateLimitConfig::new(100, Duration::from_secs(1));
            c.clock = Clock::Tsc;
            c
        })
        .build()
        .unwrap();
    let err = layer.reconfigure(&tsc).unwrap_err();
    assert_eq!(err.field(), Some("policy.api.rate_limit.clock"));
    let still = admitted_in_one_second(&service).await;
    assert!((10..=21).contains(&still), "{still}");

    // A valid one applies to the service already running.
    policy.rate_limit = Some({
        let mut c = RateLimitConfig::new(100, Duration::from_secs(1));
        c.burst = Some(10);
        c
    });
    layer.reconfigure(&policy).unwrap();
    let after = admitted_in_one_second(&service).await;
    assert!((100..=111).contains(&after), "{after}");
    assert_eq!(layer.snapshot().rate_limit.unwrap().rate_per_second, 100.0);
}

#[tokio::test]
async fn no_healthy_endpoint_is_a_typed_error() {
    let up = Upstream::start("only").await;
    let mut config = fast_ejection();
    config.outlier.max_ejection_percent = 100;
    // panic mode off: with it, the only endpoint, ejected, would still be called
    config.healthy_panic_threshold = 0;
    let layer = ReliabilityLayer::builder().balance(config).build().unwrap();
    let balance = layer
        .balancer::<&'static str, HttpEndpoint, Get>()
        .endpoint(up.name(), HttpEndpoint::new(up.addr()))
        .classify(classify)
        .build()
        .unwrap();
    let service = layer.balanced(balance);
    up.set_failing(true);
    for _ in 0..3 {
        assert_eq!(service.clone().oneshot(Get("/")).await.unwrap().status, 500);
    }
    let err = Error::from_box(service.clone().oneshot(Get("/")).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::NoHealthyEndpoint);
    assert_eq!(err.status(), 503);
}

#[tokio::test]
async fn balancer_failures_slow_the_adaptive_limiter_through_the_health_signal() {
    let up = Upstream::start("flaky").await;
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.adaptive.rate_limit]
        rate = 1000
        period = "1s"
        [policy.adaptive.rate_limit.adaptive]
        min_rate = 50
        max_rate = 1000
        interval = "50ms"
        failure_rate_threshold = 0.5
        decrease_factor = 0.5
        increase_step = 100
        min_calls = 5

        [policy.adaptive.balance.outlier]
        enabled = false
        "#,
    )
    .unwrap();
    let layer = ReliabilityLayer::from_config(&config, "adaptive").unwrap();
    let balance = layer
        .balancer::<&'static str, HttpEndpoint, Get>()
        .endpoint(up.name(), HttpEndpoint::new(up.addr()))
        .classify(classify)
        .build()
        .unwrap();
    let service = layer.balanced(balance);
    let rate = || layer.snapshot().rate_limit.unwrap().rate_per_second;
    assert_eq!(rate(), 1000.0);

    // Drive calls for `time`; the limiter adapts on the admit path.
    let drive = |time: Duration| {
        let service = service.clone();
        async move {
            let end = tokio::time::Instant::now() + time;
            while tokio::time::Instant::now() < end {
                let _ = service.clone().oneshot(Get("/")).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    up.set_failing(true);
    drive(Duration::from_millis(400)).await;
    let cut = rate();
    assert!(
        cut <= 250.0,
        "failures seen by the balancer cut the rate: {cut}"
    );
    assert!(cut >= 50.0, "never below min_rate: {cut}");

    up.recover();
    drive(Duration::from_millis(400)).await;
    let back = rate();
    assert!(
        back > cut,
        "healthy calls let the rate rise again: {cut} -> {back}"
    );
}

/// The stages share one counter reading per poll, taken lazily: the breaker's reading at a
/// call's end comes after the inner service's work in that same poll, not before it. An
/// inner future that works 3 ms on the CPU before answering is timed as at least that
/// long, so one such call opens a breaker that counts calls over 1 ms as slow. (Real time,
/// and the default clock on it: the counter; the work only bounds the measure from below.)
#[tokio::test]
async fn a_shared_clock_reading_is_taken_after_the_inner_work_of_its_poll() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.api.circuit_breaker]
        window = { type = "count", size = 1 }
        minimum_calls = 1
        slow_call_duration = "1ms"
        slow_call_rate_threshold = 1.0
        wait_duration = "1m"
        "#,
    )
    .unwrap();
    let layer = ReliabilityLayer::from_config(&config, "api").unwrap();
    let service = layer.layer(service_fn(|_: ()| {
        std::future::poll_fn(|_| {
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_millis(3) {
                std::hint::spin_loop();
            }
            std::task::Poll::Ready(Ok::<_, BoxError>(()))
        })
    }));
    service.clone().oneshot(()).await.unwrap();
    let refused = service.clone().oneshot(()).await.unwrap_err();
    assert_eq!(
        Error::from_box(refused).kind(),
        ErrorKind::CircuitOpen,
        "the 3 ms call was timed as slow"
    );
}

/// A server profile's stack has no retry stage, not one passing calls through: its response
/// future carries no retry call state (attempts, timers, the request kept for replay), which
/// every request would otherwise build and copy. Same stages, same requests: the server's
/// future is smaller than the HTTP client's by at least the request kept for replay and a
/// timer (with a pass-through retry stage it was 1,144 bytes to the client's 1,416).
#[test]
fn a_server_stack_carries_no_retry_state() {
    use tower::Service;
    let rate = || RateLimitConfig::new(1_000, Duration::from_secs(1));
    let breaker = tower_prism::breaker::BreakerConfig::default;
    let server_layer = ReliabilityLayer::builder()
        .http_server()
        .name("sizes")
        .rate_limit(rate())
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let client_layer = ReliabilityLayer::builder()
        .http()
        .name("sizes")
        .rate_limit(rate())
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let mut server = server_layer.layer(service_fn(|_: http::Request<String>| async {
        Ok::<_, BoxError>(http::Response::new(String::new()))
    }));
    let server_size = std::mem::size_of_val(&server.call(http::Request::new(String::new())));
    type Body = tower_prism::retry::ReplayBody<String>;
    let mut client = client_layer.layer(service_fn(|_: http::Request<Body>| async {
        Ok::<_, BoxError>(http::Response::new(String::new()))
    }));
    let request = tower_prism::retry::replayable(http::Request::new(String::new()), 1024);
    let client_size = std::mem::size_of_val(&client.call(request));
    let replay_and_timer =
        std::mem::size_of::<http::Request<String>>() + std::mem::size_of::<tokio::time::Sleep>();
    assert!(
        server_size + replay_and_timer <= client_size,
        "server {server_size} bytes, client {client_size}"
    );
}

/// A policy with neither a concurrency limit nor a deadline stacks neither stage (the
/// rest of the stack right under the rate limit); one with either stacks both. Either
/// way the service reaches, lends and gives back the same inner service, and calls go
/// through every configured stage.
#[tokio::test]
async fn a_stack_without_the_middle_stages_reaches_the_inner_service_as_a_full_one() {
    use tower::Service;
    #[derive(Debug, Clone, PartialEq)]
    struct Tagged(u32);
    impl tower::Service<u32> for Tagged {
        type Response = u32;
        type Error = BoxError;
        type Future = std::future::Ready<Result<u32, BoxError>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), BoxError>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, n: u32) -> Self::Future {
            std::future::ready(Ok(n + self.0))
        }
    }
    let rate = || RateLimitConfig::new(1, Duration::from_secs(3600));
    let lean = ReliabilityLayer::builder()
        .name("lean")
        .rate_limit(rate())
        .build()
        .unwrap();
    let full = ReliabilityLayer::builder()
        .name("full")
        .rate_limit(rate())
        .deadline(
            tower_prism::deadline::DeadlineConfig::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    for layer in [lean, full] {
        let mut service = layer.layer(Tagged(1));
        assert_eq!(service.get_ref(), &Tagged(1));
        service.get_mut().0 = 2;
        assert_eq!(service.clone().get_ref(), &Tagged(2));
        assert_eq!(service.ready().await.unwrap().call(40).await.unwrap(), 42);
        let limited = service.ready().await.unwrap().call(40).await.unwrap_err();
        assert_eq!(Error::from_box(limited).kind(), ErrorKind::RateLimited);
        assert_eq!(service.into_inner(), Tagged(2));
    }
}
