//! The deadline and fault-injection stages as parts of a policy: from the TOML tables, in
//! the stack's fixed order, in the snapshot, and through a reload (a `fault` table may come
//! and go; a `deadline` table may not).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower::{service_fn, BoxError, Layer, ServiceExt};
use tower_prism::{
    ConfigFileError, Error, ErrorKind, GrpcServer, HttpServer, PolicyConfig, ReliabilityConfig,
    ReliabilityLayer,
};

fn policy(toml: &str) -> PolicyConfig {
    ReliabilityConfig::from_toml(toml).unwrap().policy["p"].clone()
}

/// A service that counts its calls and fails them all.
fn failing(
    calls: &Arc<AtomicU32>,
) -> impl tower::Service<
    u32,
    Response = u32,
    Error = std::io::Error,
    Future = std::future::Ready<Result<u32, std::io::Error>>,
> + Clone {
    let calls = calls.clone();
    service_fn(move |_request: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err(std::io::Error::other("down")))
    })
}

#[tokio::test(start_paused = true)]
async fn a_policys_deadline_ends_its_retries_and_answers_timeout() {
    let layer = ReliabilityLayer::from_policy(
        "p",
        &policy(
            r#"
            [policy.p.deadline]
            timeout = "300ms"
            [policy.p.circuit_breaker]
            [policy.p.retry]
            max_attempts = 5
            backoff = { kind = "fixed", base = "200ms", jitter = "none" }
            "#,
        ),
    )
    .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let start = tokio::time::Instant::now();
    let error = layer.layer(failing(&calls)).oneshot(1).await.unwrap_err();
    // attempt at 0 ms, backoff, attempt at 200 ms; the next backoff would end after the
    // deadline, so the retry stage gives up at once rather than sleep into it
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(Error::from_box(error).kind(), ErrorKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn a_policys_deadline_cuts_a_slow_call_and_counts_it() {
    let layer =
        ReliabilityLayer::from_policy("p", &policy("[policy.p.deadline]\ntimeout = \"100ms\""))
            .unwrap();
    let slow = service_fn(|request: u32| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, BoxError>(request)
    });
    let start = tokio::time::Instant::now();
    let error = layer.layer(slow).oneshot(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(Error::from_box(error).kind(), ErrorKind::Timeout);
    let deadline = layer.snapshot().deadline.unwrap();
    assert_eq!(deadline.timeout, Some(Duration::from_millis(100)));
    assert_eq!((deadline.expired, deadline.expired_policy), (1, 1));
}

/// A call whose retries ran out of time at its deadline (the retry stage below gives up
/// then, before the deadline stage's own timer fires) counts as an expiry. It counted
/// none, so `prism_deadline_expired_total` and its alert missed every call of a policy
/// with retries that ran its whole deadline.
#[tokio::test(start_paused = true)]
async fn a_call_whose_retries_end_at_the_deadline_counts_as_expired() {
    let layer = ReliabilityLayer::from_policy(
        "p",
        &policy(
            "[policy.p.deadline]\ntimeout = \"50ms\"\n[policy.p.retry]\nmax_attempts = 10\n\
             attempt_timeout = \"20ms\"\nbackoff = { kind = \"fixed\", base = \"1ms\", jitter = \"none\" }",
        ),
    )
    .unwrap();
    let service = layer.layer(service_fn(|request: u32| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<u32, std::io::Error>(request)
    }));
    let start = tokio::time::Instant::now();
    let error = Error::from_box(service.oneshot(1).await.unwrap_err());
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    let deadline = layer.snapshot().deadline.unwrap();
    assert_eq!(
        (deadline.expired, deadline.expired_policy),
        (1, 1),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_http_servers_deadline_comes_from_the_request_header() {
    let layer = ReliabilityLayer::from_policy_as(
        "p",
        &policy(
            r#"
            [policy.p.deadline]
            timeout = "10s"
            header = "grpc-timeout"
            "#,
        ),
        HttpServer,
    )
    .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen_inner = seen.clone();
    let slow = service_fn(move |request: http::Request<String>| {
        *seen_inner.lock().unwrap() = request.headers().get("grpc-timeout").cloned();
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>(http::Response::new(String::new()))
        }
    });
    let request = http::Request::builder()
        .header("grpc-timeout", "250m")
        .body(String::new())
        .unwrap();
    let start = tokio::time::Instant::now();
    let error = layer.layer(slow).oneshot(request).await.unwrap_err();
    // the request's 250 ms is tighter than the policy's 10 s
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(Error::from_box(error).kind(), ErrorKind::Timeout);
    // the time left went on to the inner service, in the header's own syntax
    assert_eq!(
        seen.lock().unwrap().as_ref().unwrap(),
        "250000u",
        "the inner service sees the deadline it has left"
    );
    assert_eq!(layer.snapshot().deadline.unwrap().expired_request, 1);
}

/// A request that waited in the rate limit's or the concurrency limit's queue has spent
/// that wait of the deadline its caller sent: it was given the whole budget again when the
/// queue let it through, and a caller that had given up got a 200 long after.
#[tokio::test(start_paused = true)]
async fn a_callers_deadline_counts_the_wait_in_a_queue_above_it() {
    for (queue, table) in [
        (
            "rate limit",
            "[policy.p.rate_limit]\nrate = 1\nperiod = \"400ms\"\nburst = 1\nqueue_size = 4\nmax_wait = \"1s\"",
        ),
        (
            "concurrency limit",
            "[policy.p.concurrency_limit]\ninitial_limit = 1\nmin_limit = 1\nmax_limit = 1\nmax_wait = \"1s\"",
        ),
    ] {
        let toml = format!(
            "{table}\n[policy.p.deadline]\ntimeout = \"10s\"\nheader = \"grpc-timeout\"\n"
        );
        let layer = ReliabilityLayer::from_policy_as("p", &policy(&toml), HttpServer).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen_inner = seen.clone();
        let svc = layer.layer(service_fn(move |request: http::Request<String>| {
            seen_inner
                .lock()
                .unwrap()
                .push(request.headers().get("grpc-timeout").cloned());
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, BoxError>(http::Response::new(String::new()))
            }
        }));
        let request = |timeout: &str| {
            http::Request::builder()
                .header("grpc-timeout", timeout)
                .body(String::new())
                .unwrap()
        };
        // The first holds the token (or the one slot) for a while; the second queues
        // behind it with 100 ms to live, the third with 2 s.
        let first = tokio::spawn(svc.clone().oneshot(request("5S")));
        tokio::task::yield_now().await;
        let start = tokio::time::Instant::now();
        let short = tokio::spawn(svc.clone().oneshot(request("100m")));
        tokio::task::yield_now().await;
        let long = tokio::spawn(svc.clone().oneshot(request("2S")));
        let short = short.await.unwrap().unwrap_err();
        assert_eq!(
            Error::from_box(short).kind(),
            ErrorKind::Timeout,
            "{queue}: the short request ran out while queued"
        );
        assert!(
            start.elapsed() < Duration::from_millis(1100),
            "{queue}: answered once its queue let it through: {:?}",
            start.elapsed()
        );
        long.await.unwrap().unwrap();
        first.await.unwrap().unwrap();
        // The long one went on with what was left of its 2 s, not a fresh 2 s.
        let seen = seen.lock().unwrap();
        let left = seen
            .iter()
            .flatten()
            .map(|v| v.to_str().unwrap().trim_end_matches('u').parse::<u64>().unwrap())
            .min()
            .unwrap();
        assert!(
            left < 1_800_000,
            "{queue}: the queued request's budget was restarted: {left} us left, {seen:?}"
        );
        assert_eq!(seen.len(), 2, "{queue}: the expired request never reached the service");
    }
}

#[tokio::test(start_paused = true)]
async fn a_policys_faults_are_below_its_retries() {
    let layer = ReliabilityLayer::from_policy(
        "p",
        &policy(
            r#"
            [policy.p.retry]
            max_attempts = 3
            backoff = { kind = "fixed", base = "10ms", jitter = "none" }
            [policy.p.fault]
            abort = 1.0
            seed = 7
            "#,
        ),
    )
    .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let error = layer.layer(failing(&calls)).oneshot(1).await.unwrap_err();
    // every attempt was aborted by the fault stage before it reached the service
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(Error::from_box(error).kind(), ErrorKind::RetriesExhausted);
    let fault = layer.snapshot().fault.unwrap();
    assert_eq!((fault.injected_aborts, fault.calls), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn a_reload_switches_a_game_day_on_and_off() {
    let layer = ReliabilityLayer::from_policy("p", &policy("[policy.p.circuit_breaker]")).unwrap();
    let echo = service_fn(|request: u32| async move { Ok::<_, BoxError>(request) });
    let service = layer.layer(echo);
    assert_eq!(service.clone().oneshot(1).await.unwrap(), 1);
    assert!(layer.snapshot().fault.is_none());

    layer
        .reconfigure(&policy(
            "[policy.p.circuit_breaker]\n[policy.p.fault]\nerror = 1.0",
        ))
        .unwrap();
    let error = service.clone().oneshot(2).await.unwrap_err();
    assert!(error.is::<tower_prism::fault::Error>(), "{error}");
    assert_eq!(layer.snapshot().fault.unwrap().injected_errors, 1);

    layer
        .reconfigure(&policy("[policy.p.circuit_breaker]"))
        .unwrap();
    assert_eq!(service.clone().oneshot(3).await.unwrap(), 3);
    assert!(layer.snapshot().fault.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_status_fault_needs_a_profile_that_can_answer_with_one() {
    let with_status = policy("[policy.p.fault]\nstatus = { rate = 0.5, code = 503 }");
    let error = ReliabilityLayer::from_policy("p", &with_status).unwrap_err();
    assert_eq!(error.field(), Some("policy.p.fault.status"), "{error}");

    // a reload is refused too, and changes nothing
    let layer =
        ReliabilityLayer::from_policy("p", &policy("[policy.p.fault]\nerror = 1.0")).unwrap();
    let error = layer.reconfigure(&with_status).unwrap_err();
    assert_eq!(error.field(), Some("policy.p.fault.status"), "{error}");
    let echo = service_fn(|request: u32| async move { Ok::<_, BoxError>(request) });
    let error = layer.layer(echo).oneshot(1).await.unwrap_err();
    assert!(
        error.is::<tower_prism::fault::Error>(),
        "the faults in force before the refused reload still run: {error}"
    );

    // an HTTP profile can
    ReliabilityLayer::from_policy_as("p", &with_status, HttpServer).unwrap();
}

/// A `grpc_code` status fault needs a gRPC profile: an HTTP one, which cannot answer it,
/// refuses it naming `status.grpc_code` (at build and at reload), and `Generic` refuses
/// any status. The field was unknown to every profile.
#[tokio::test(start_paused = true)]
async fn a_grpc_status_fault_needs_a_grpc_profile() {
    let with_grpc = policy("[policy.p.fault]\nstatus = { rate = 0.5, grpc_code = 14 }");
    let error = ReliabilityLayer::from_policy_as("p", &with_grpc, HttpServer).unwrap_err();
    assert_eq!(
        error.field(),
        Some("policy.p.fault.status.grpc_code"),
        "{error}"
    );
    let http =
        ReliabilityLayer::from_policy_as("p", &policy("[policy.p.fault]"), HttpServer).unwrap();
    let error = http.reconfigure(&with_grpc).unwrap_err();
    assert_eq!(
        error.field(),
        Some("policy.p.fault.status.grpc_code"),
        "{error}"
    );
    let error = ReliabilityLayer::from_policy("p", &with_grpc).unwrap_err();
    assert_eq!(error.field(), Some("policy.p.fault.status"), "{error}");
    ReliabilityLayer::from_policy_as("p", &with_grpc, GrpcServer).unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_http_status_fault_answers_without_calling_the_service() {
    let layer = ReliabilityLayer::from_policy_as(
        "p",
        &policy("[policy.p.fault]\nstatus = { rate = 1.0, code = 503 }"),
        HttpServer,
    )
    .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let service = layer.layer(service_fn(move |_request: http::Request<String>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, BoxError>(http::Response::new("served".to_owned())) }
    }));
    let response = service
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.body().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(layer.snapshot().fault.unwrap().injected_statuses, 1);
}

/// An axum route's responses (`axum::body::Body`) get the status a game day asks for,
/// with the facade's `axum` feature: the body type was unknown to the HTTP profiles, and a
/// 503 fault came out as an injected error (502 through `http_errors()`).
#[tokio::test(start_paused = true)]
async fn an_http_status_fault_answers_an_axum_route() {
    let layer = ReliabilityLayer::from_policy_as(
        "p",
        &policy("[policy.p.fault]\nstatus = { rate = 1.0, code = 503 }"),
        HttpServer,
    )
    .unwrap();
    let route = service_fn(|_request: http::Request<axum::body::Body>| async {
        Ok::<_, BoxError>(http::Response::new(axum::body::Body::from("served")))
    });
    let request = http::Request::new(axum::body::Body::empty());
    let response = layer.layer(route).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(layer.snapshot().fault.unwrap().injected_statuses, 1);
}

#[test]
fn a_reload_may_not_add_or_remove_a_deadline() {
    let layer = ReliabilityLayer::from_policy("p", &policy("[policy.p.circuit_breaker]")).unwrap();
    let error = layer
        .reconfigure(&policy(
            "[policy.p.circuit_breaker]\n[policy.p.deadline]\ntimeout = \"1s\"",
        ))
        .unwrap_err();
    assert!(
        matches!(
            error,
            ConfigFileError::ShapeChanged {
                stage: "deadline",
                change: "add",
                ..
            }
        ),
        "{error}"
    );

    // an HTTP profile's, whose carrier reads a header
    let layer = ReliabilityLayer::from_policy_as(
        "p",
        &policy("[policy.p.deadline]\ntimeout = \"1s\""),
        HttpServer,
    )
    .unwrap();
    layer
        .reconfigure(&policy("[policy.p.deadline]\ntimeout = \"2s\""))
        .unwrap();
    assert_eq!(
        layer.snapshot().deadline.unwrap().timeout,
        Some(Duration::from_secs(2))
    );
    // the header is fixed when the stage is built
    let error = layer
        .reconfigure(&policy(
            "[policy.p.deadline]\ntimeout = \"2s\"\nheader = \"x-timeout\"",
        ))
        .unwrap_err();
    assert_eq!(error.field(), Some("policy.p.deadline.header"), "{error}");
    // and so is its format, quoted as the file spells it
    let layer = ReliabilityLayer::from_policy_as(
        "p",
        &policy("[policy.p.deadline]\ntimeout = \"1s\"\nheader = \"x-timeout\""),
        HttpServer,
    )
    .unwrap();
    let error = layer
        .reconfigure(&policy(
            "[policy.p.deadline]\ntimeout = \"1s\"\nheader = \"x-timeout\"\nheader_format = \"seconds\"",
        ))
        .unwrap_err();
    assert_eq!(error.field(), Some("policy.p.deadline.header_format"));
    assert!(error.to_string().contains("= seconds:"), "{error}");
}

/// A policy balancing round robin whose fault stage fails every call.
fn round_robin_failing_every_call() -> ReliabilityLayer {
    let policy = policy(
        r#"
        [policy.p.balance]
        strategy = "round_robin"
        [policy.p.fault]
        error = 1.0
        "#,
    );
    ReliabilityLayer::from_policy("p", &policy).unwrap()
}

#[tokio::test(start_paused = true)]
async fn over_a_policys_balancer_faults_are_each_endpoints_own() {
    let layer = round_robin_failing_every_call();
    let echo = service_fn(|request: u32| async move { Ok::<_, BoxError>(request) });
    let service = layer
        .layer_endpoints(["a", "b"].map(|key| (key, echo)))
        .unwrap();
    for request in 0..4 {
        let error = service.clone().oneshot(request).await.unwrap_err();
        assert!(error.is::<tower_prism::fault::Error>(), "{error}");
    }
    // the balancer saw each injected fault as a failure of the endpoint it picked
    let endpoints = service.get_ref().handle().snapshot().endpoints;
    let failures: Vec<_> = endpoints.iter().map(|e| (e.key, e.failures)).collect();
    assert_eq!(failures, [("a", 2), ("b", 2)]);
    assert_eq!(layer.snapshot().fault.unwrap().injected_errors, 4);
}

/// An endpoint added at runtime to a balancer from `layer_endpoints` gets the policy's fault
/// stage through `fault_endpoint`, as the first ones got it: an injected fault is its own
/// failure. There was no way to put the stage over it (the handle takes the faulted
/// endpoint type, whose only public constructor passed every call through).
#[tokio::test(start_paused = true)]
async fn an_endpoint_added_at_runtime_gets_the_policys_faults() {
    let layer = round_robin_failing_every_call();
    let echo = service_fn(|request: u32| async move { Ok::<_, BoxError>(request) });
    let service = layer.layer_endpoints([("a", echo)]).unwrap();
    let handle = service.get_ref().handle();
    handle.add("b", layer.fault_endpoint(echo)).unwrap();
    handle.remove(&"a");
    let error = service.clone().oneshot(7).await.unwrap_err();
    assert!(error.is::<tower_prism::fault::Error>(), "{error}");
    let endpoints = handle.snapshot().endpoints;
    let failures: Vec<_> = endpoints.iter().map(|e| (e.key, e.failures)).collect();
    assert_eq!(failures, [("b", 1)]);
}

/// A `[deadline] header` on a profile whose requests carry none (`Generic`, whose carrier
/// reads and writes nothing) is refused naming `deadline.header`, at build and at reload.
/// It was accepted and never read: a caller's deadline in that header was ignored without
/// a word.
#[test]
fn a_profile_without_request_headers_refuses_a_deadline_header() {
    let with_header = policy("[policy.p.deadline]\ntimeout = \"1s\"\nheader = \"grpc-timeout\"");
    let error = ReliabilityLayer::from_policy("p", &with_header).unwrap_err();
    assert_eq!(error.field(), Some("policy.p.deadline.header"), "{error}");
    assert!(error.to_string().contains("no request headers"), "{error}");
    ReliabilityLayer::from_policy_as("p", &with_header, HttpServer).unwrap();
    ReliabilityLayer::from_policy_as("p", &with_header, tower_prism::Grpc::new()).unwrap();

    let layer =
        ReliabilityLayer::from_policy("p", &policy("[policy.p.deadline]\ntimeout = \"1s\""))
            .unwrap();
    let error = layer.reconfigure(&with_header).unwrap_err();
    assert_eq!(error.field(), Some("policy.p.deadline.header"), "{error}");
    assert!(error.to_string().contains("no request headers"), "{error}");
}

#[test]
fn a_deadline_header_http_itself_uses_is_refused() {
    let toml = "[policy.p.deadline]\ntimeout = \"1s\"\nheader = \"content-length\"";
    let error = ReliabilityConfig::from_toml(toml).unwrap_err();
    assert_eq!(error.field(), Some("policy.p.deadline.header"), "{error}");
}

/// Two balancers a policy stacks over endpoints export their metrics apart: the second is
/// named `<policy>-2`. Both wrote the policy's series, last writer wins (the endpoints
/// gauge read 1 for 3 + 1 endpoints) and per-endpoint counters summed across them.
#[test]
fn two_balancers_of_one_policy_keep_their_metrics_apart() {
    use tower_prism_testkit::metrics::Capture;

    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        let layer = ReliabilityLayer::builder().name("p").build().unwrap();
        let echo = || service_fn(|request: u32| async move { Ok::<u32, BoxError>(request) });
        let first = layer
            .layer_endpoints::<_, _, u32>([("a1", echo()), ("a2", echo()), ("a3", echo())])
            .unwrap();
        let second = layer
            .layer_endpoints::<_, _, u32>([("b1", echo())])
            .unwrap();
        assert_eq!(layer.snapshot().balancers, 2);
        assert_eq!(capture.gauge("prism_balance_endpoints{name=p}"), 3.0);
        assert_eq!(capture.gauge("prism_balance_endpoints{name=p-2}"), 1.0);
        drop(first);
        // the name of a balancer gone is free again
        let third = layer
            .layer_endpoints::<_, _, u32>([("c1", echo()), ("c2", echo())])
            .unwrap();
        assert_eq!(capture.gauge("prism_balance_endpoints{name=p}"), 2.0);
        drop((second, third));
    });
}
