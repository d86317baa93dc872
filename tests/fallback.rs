//! The fallback stage alone: each error kind answered when listed and passed on when not,
//! made by the real stages; every form of answer; the HTTP answer's parts; the metric and
//! snapshot by kind; reconfigure; bad configs; no allocation on a successful call.

use std::convert::Infallible;
use std::future::{pending, ready, Ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_prism::balance::{Balance, BalanceConfig};
use tower_prism::breaker::{BreakerConfig, CircuitBreakerLayer};
use tower_prism::fallback::{
    FallbackCause, FallbackConfig, FallbackLayer, FallbackSnapshot, DEFAULT_STATUS,
};
use tower_prism::limit::concurrency::{ConcurrencyConfig, ConcurrencyLimitLayer};
use tower_prism::limit::rate::{RateLimitConfig, RateLimitLayer};
use tower_prism::retry::{Backoff, RetryConfig, RetryLayer};
use tower_prism::{Error, ErrorKind};
use tower_prism_testkit::metrics::Capture;
use tower_prism_testkit::{allocations_per_call, CountingAlloc, Echo};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const ALL: [ErrorKind; 8] = [
    ErrorKind::RateLimited,
    ErrorKind::ConcurrencyLimited,
    ErrorKind::CircuitOpen,
    ErrorKind::RetriesExhausted,
    ErrorKind::Timeout,
    ErrorKind::NoHealthyEndpoint,
    ErrorKind::LimiterUnavailable,
    ErrorKind::Inner,
];

/// A service that fails every call with `error()`.
fn failing<F>(error: F) -> impl Service<u32, Response = u32, Error = BoxError> + Clone
where
    F: Fn() -> BoxError + Clone,
{
    service_fn(move |_: u32| {
        let error = error.clone();
        async move { Err::<u32, _>(error()) }
    })
}

fn ok() -> impl Service<u32, Response = u32, Error = Infallible> + Clone {
    service_fn(|n: u32| async move { Ok::<_, Infallible>(n) })
}

/// Drives a stack of `kind`'s real stage (or a service that returns that stage's real
/// error) to the point where the next call fails with `kind`, then makes that call
/// through a fallback answering `on` with 7. `Ok(7)` when answered.
async fn fail_with(kind: ErrorKind, on: &[ErrorKind]) -> (Result<u32, BoxError>, FallbackSnapshot) {
    let fallback = FallbackLayer::value(on.iter().copied(), 7u32);
    let handle = fallback.handle().clone();
    let result = match kind {
        ErrorKind::RateLimited => {
            let one = RateLimitConfig::builder()
                .rate(1)
                .period(Duration::from_secs(60))
                .burst(1)
                .build()
                .unwrap();
            let mut svc = ServiceBuilder::new()
                .layer(fallback)
                .layer(RateLimitLayer::from_config(&one).unwrap())
                .service(ok());
            assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
            svc.ready().await.unwrap().call(2).await
        }
        ErrorKind::ConcurrencyLimited => {
            let mut svc = ServiceBuilder::new()
                .layer(fallback)
                .layer(ConcurrencyLimitLayer::from_config(&ConcurrencyConfig::fixed(1)).unwrap())
                .service(service_fn(|n: u32| async move {
                    if n == 0 {
                        pending::<()>().await;
                    }
                    Ok::<_, Infallible>(n)
                }));
            let held = svc.ready().await.unwrap().call(0);
            let mut held = Box::pin(held);
            assert!(held.as_mut().now_or_never().is_none());
            let result = svc.ready().await.unwrap().call(1).await;
            drop(held);
            result
        }
        ErrorKind::CircuitOpen => {
            let breaker = CircuitBreakerLayer::from_config(&BreakerConfig::default()).unwrap();
            breaker.handle().force_open();
            let svc = ServiceBuilder::new()
                .layer(fallback)
                .layer(breaker)
                .service(ok());
            svc.oneshot(1).await
        }
        ErrorKind::RetriesExhausted => {
            let config = RetryConfig::builder()
                .max_attempts(2)
                .backoff(Backoff::fixed(Duration::from_millis(10)))
                .no_budget()
                .build()
                .unwrap();
            let svc = ServiceBuilder::new()
                .layer(fallback)
                .layer(RetryLayer::from_config(&config).unwrap())
                .service(failing(|| "refused".into()));
            svc.oneshot(1).await
        }
        ErrorKind::Timeout => {
            let svc = ServiceBuilder::new()
                .layer(fallback)
                .timeout(Duration::from_millis(100))
                .service(service_fn(|_: u32| pending::<Result<u32, Infallible>>()));
            svc.oneshot(1).await
        }
        ErrorKind::NoHealthyEndpoint => {
            let balance: Balance<&str, tower_prism_testkit::Echo, u32> =
                Balance::new(BalanceConfig::default()).unwrap();
            let svc = ServiceBuilder::new().layer(fallback).service(balance);
            svc.oneshot(1).await
        }
        ErrorKind::LimiterUnavailable => {
            let svc = ServiceBuilder::new().layer(fallback).service(failing(|| {
                Box::new(tower_prism::limit::Error::Unavailable(
                    "redis timed out".into(),
                ))
            }));
            svc.oneshot(1).await
        }
        _ => {
            let svc = ServiceBuilder::new()
                .layer(fallback)
                .service(failing(|| "connection refused".into()));
            svc.oneshot(1).await
        }
    };
    (result, handle.snapshot())
}

#[tokio::test(start_paused = true)]
async fn every_kind_is_answered_when_listed_and_passed_on_when_not() {
    for kind in ALL {
        let (answered, snap) = fail_with(kind, &[kind]).await;
        assert_eq!(answered.unwrap(), 7, "{kind} listed");
        assert_eq!(snap.answered, 1, "{kind}");
        assert_eq!(snap.answered_for(kind), 1, "{kind}");
        assert_eq!(snap.passed_on, 0, "{kind}");

        let others: Vec<ErrorKind> = ALL.into_iter().filter(|&k| k != kind).collect();
        let (passed, snap) = fail_with(kind, &others).await;
        let error = Error::from_box(passed.unwrap_err());
        assert_eq!(
            error.kind(),
            kind,
            "{kind} passed on, still classified as such"
        );
        assert_eq!((snap.answered, snap.passed_on), (0, 1), "{kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn no_kind_listed_answers_every_kind() {
    for kind in ALL {
        let (answered, _) = fail_with(kind, &[]).await;
        assert_eq!(answered.unwrap(), 7, "{kind}");
    }
}

#[tokio::test]
async fn an_error_passed_on_is_the_inner_services_own() {
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::value([ErrorKind::CircuitOpen], 0u32))
        .service(failing(|| {
            Box::new(tower_prism::limit::Error::Unavailable("x".into()))
        }));
    let error = svc.oneshot(1).await.unwrap_err();
    assert!(matches!(
        error.downcast_ref::<tower_prism::limit::Error>(),
        Some(tower_prism::limit::Error::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_success_passes_through_untouched() {
    let layer = FallbackLayer::value([], 0u32);
    let handle = layer.handle().clone();
    let svc = ServiceBuilder::new().layer(layer).service(ok());
    assert_eq!(svc.oneshot(5).await.unwrap(), 5);
    let snap = handle.snapshot();
    assert_eq!((snap.answered, snap.passed_on), (0, 0));
}

#[tokio::test]
async fn a_closure_answers_from_the_error() {
    let layer = FallbackLayer::answer_with([ErrorKind::Inner], |error: &Error| {
        format!("{}: {}", error.kind(), error.get_ref())
    });
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: ()| async { Err::<String, _>("refused") }));
    assert_eq!(svc.oneshot(()).await.unwrap(), "inner: refused");
}

#[tokio::test]
async fn a_service_answers_with_the_error_and_its_failure_is_the_calls() {
    let backup = service_fn(|error: Error| async move {
        match error.kind() {
            ErrorKind::Inner => Ok(format!("backup after {}", error.get_ref())),
            _ => Err("backup down too"),
        }
    });
    let layer = FallbackLayer::service([], backup);
    let primary = |error: &'static str| {
        service_fn(move |_: ()| async move {
            match error {
                "timeout" => {
                    Err::<String, BoxError>(Box::new(tower::timeout::error::Elapsed::new()))
                }
                other => Err(other.into()),
            }
        })
    };
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(primary("refused"));
    assert_eq!(svc.oneshot(()).await.unwrap(), "backup after refused");
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(primary("timeout"));
    assert_eq!(
        svc.oneshot(()).await.unwrap_err().to_string(),
        "backup down too"
    );
}

/// A fallback service that is not ready at first: the answer waits for its readiness.
#[derive(Clone)]
struct SlowToStart(Arc<AtomicUsize>);

impl Service<Error> for SlowToStart {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Error) -> Self::Future {
        ready(Ok(42))
    }
}

#[tokio::test]
async fn a_service_answer_is_called_only_once_ready() {
    let polls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::service([], SlowToStart(polls.clone())))
        .service(failing(|| "refused".into()));
    assert_eq!(svc.oneshot(1).await.unwrap(), 42);
    assert_eq!(polls.load(Ordering::SeqCst), 2);
}

/// A fallback service whose answer never comes, counting the answers alive.
#[derive(Clone)]
struct Hanging(Arc<AtomicUsize>);

struct Alive(Arc<AtomicUsize>);
impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service<Error> for Hanging {
    type Response = u32;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, Infallible>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Error) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        let alive = Alive(self.0.clone());
        Box::pin(async move {
            let _alive = alive;
            pending().await
        })
    }
}

#[tokio::test]
async fn dropping_a_call_mid_answer_drops_the_answer() {
    let alive = Arc::new(AtomicUsize::new(0));
    let layer = FallbackLayer::service([], Hanging(alive.clone()));
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(failing(|| "refused".into()));
    let mut call = Box::pin(svc.ready().await.unwrap().call(1));
    assert!(call.as_mut().now_or_never().is_none());
    assert_eq!(alive.load(Ordering::SeqCst), 1);
    drop(call);
    assert_eq!(alive.load(Ordering::SeqCst), 0);
}

fn http_failing(
    error: impl Fn() -> BoxError + Clone,
) -> impl Service<Request<String>, Response = Response<String>, Error = BoxError> + Clone {
    service_fn(move |_: Request<String>| {
        let error = error.clone();
        async move { Err::<Response<String>, _>(error()) }
    })
}

#[tokio::test]
async fn the_http_answer_has_the_configured_status_headers_and_body() {
    let config: FallbackConfig = toml::from_str(
        r#"
        on = ["circuit_open"]
        status = 200
        headers = { "Content-Type" = "application/json", "x-degraded" = "true" }
        body = '{"items": []}'
        "#,
    )
    .unwrap();
    let open = || -> BoxError {
        Box::new(tower_prism::breaker::Error::CircuitOpen {
            retry_after: Duration::from_secs(3),
        })
    };
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::from_config(&config).unwrap())
        .service(http_failing(open));
    let response = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-degraded"], "true");
    assert_eq!(response.headers().len(), 2, "no Retry-After on a 200");
    assert_eq!(response.body(), r#"{"items": []}"#);
    let cause = response.extensions().get::<FallbackCause>().unwrap();
    assert_eq!(cause.kind(), ErrorKind::CircuitOpen);
}

#[tokio::test]
async fn the_default_http_answer_is_a_503_with_the_errors_retry_after() {
    assert_eq!(DEFAULT_STATUS, 503);
    let shed = || -> BoxError {
        Box::new(tower_prism::limit::Error::RateLimited {
            retry_after: Duration::from_millis(2500),
        })
    };
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::from_config(&FallbackConfig::default()).unwrap())
        .service(http_failing(shed));
    let response = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "3");
    assert!(response.body().is_empty());
}

#[tokio::test]
async fn the_http_answer_suits_axum_and_http_body_util_bodies() {
    let config = FallbackConfig::builder()
        .status(200)
        .body("cached")
        .build()
        .unwrap();
    let layer = FallbackLayer::from_config(&config).unwrap();
    let axum_route = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_: Request<axum::body::Body>| async {
            Err::<Response<axum::body::Body>, BoxError>("down".into())
        }));
    let response = axum_route
        .oneshot(Request::new(axum::body::Body::empty()))
        .await
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(body, "cached");

    type Full = http_body_util::Full<bytes::Bytes>;
    let full = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: ()| async {
            Err::<Response<Full>, BoxError>("down".into())
        }));
    use http_body_util::BodyExt;
    let response = full.oneshot(()).await.unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "cached"
    );
}

#[tokio::test]
async fn reconfigure_changes_the_answer_and_the_kinds_and_a_bad_config_nothing() {
    let config = FallbackConfig::builder()
        .on([ErrorKind::Inner])
        .status(200)
        .body("first")
        .build()
        .unwrap();
    let layer = FallbackLayer::builder(config.clone())
        .name("reco")
        .build()
        .unwrap();
    let handle = layer.handle().clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(http_failing(|| "down".into()));
    let call = || svc.clone().oneshot(Request::new(String::new()));
    assert_eq!(call().await.unwrap().body(), "first");

    let second = FallbackConfig::builder()
        .on([ErrorKind::Inner])
        .status(203)
        .header("x-v", "2")
        .body("second")
        .build()
        .unwrap();
    handle.reconfigure(&second).unwrap();
    let response = call().await.unwrap();
    assert_eq!(response.status(), 203);
    assert_eq!(response.headers()["x-v"], "2");
    assert_eq!(response.body(), "second");

    let mut bad_status = second.clone();
    bad_status.status = 1000;
    let mut bad_header = second.clone();
    bad_header.on.clear();
    bad_header
        .headers
        .insert("bad header".to_owned(), "x".to_owned());
    for bad in [bad_status, bad_header] {
        assert!(handle.reconfigure(&bad).is_err());
        assert_eq!(handle.config(), second, "all or nothing");
        assert_eq!(call().await.unwrap().body(), "second");
    }

    let mut only_open = second.clone();
    only_open.on = vec![ErrorKind::CircuitOpen];
    handle.reconfigure(&only_open).unwrap();
    let error = Error::from_box(call().await.unwrap_err());
    assert_eq!(error.kind(), ErrorKind::Inner);
    assert_eq!(handle.snapshot().on, [ErrorKind::CircuitOpen]);
}

#[tokio::test]
async fn reconfigure_changes_the_kinds_of_a_code_given_answer() {
    let layer = FallbackLayer::value([ErrorKind::CircuitOpen], 0u32);
    let handle = layer.handle().clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(failing(|| "down".into()));
    assert!(svc.clone().oneshot(1).await.is_err());
    let inner = FallbackConfig::builder()
        .on([ErrorKind::Inner])
        .build()
        .unwrap();
    handle.reconfigure(&inner).unwrap();
    assert_eq!(svc.oneshot(1).await.unwrap(), 0);
}

#[test]
fn bad_configs_are_typed_errors_naming_the_field() {
    let from = |toml: &str| -> String {
        let config: FallbackConfig = match toml::from_str(toml) {
            Ok(config) => config,
            Err(e) => return e.to_string(),
        };
        let error = FallbackLayer::from_config(&config).unwrap_err();
        error.field().to_owned()
    };
    assert_eq!(from("status = 1000"), "status");
    assert_eq!(from("status = 99"), "status");
    assert_eq!(from(r#"headers = { "bad name" = "x" }"#), "headers");
    assert_eq!(from(r#"headers = { "x-a" = "a\u0000b" }"#), "headers.x-a");
    assert!(from(r#"on = ["circuit_opened"]"#).contains("invalid `on` = circuit_opened"));
    assert!(from("status = -1").contains("status"));
    assert!(from("stauts = 200").contains("unknown field"));

    let mut bad = FallbackConfig::default();
    bad.status = 1000;
    assert_eq!(bad.validate().unwrap_err().field(), "status");
    assert!(FallbackLayer::builder(bad).value(0u32).build().is_err());
}

#[tokio::test(start_paused = true)]
async fn the_metric_counts_answers_by_kind_under_the_policy_name() {
    let capture = Capture::default();
    let layer = metrics::with_local_recorder(&capture, || {
        FallbackLayer::builder(FallbackConfig::default())
            .name("catalog")
            .on([ErrorKind::Inner, ErrorKind::Timeout])
            .value(0u32)
            .build()
            .unwrap()
    });
    let key =
        |reason: &str| format!("prism_fallback_answered_total{{name=catalog,reason={reason}}}");
    let inner = ServiceBuilder::new()
        .layer(layer.clone())
        .service(failing(|| "down".into()));
    let slow = ServiceBuilder::new()
        .layer(layer.clone())
        .timeout(Duration::from_millis(10))
        .service(service_fn(|_: u32| pending::<Result<u32, Infallible>>()));
    let open = ServiceBuilder::new()
        .layer(layer.clone())
        .service(failing(|| {
            Box::new(tower_prism::breaker::Error::CircuitOpen {
                retry_after: Duration::from_secs(1),
            })
        }));
    for _ in 0..3 {
        inner.clone().oneshot(1).await.unwrap();
    }
    slow.oneshot(1).await.unwrap();
    open.oneshot(1).await.unwrap_err();
    assert_eq!(capture.counter(&key("inner")), 3);
    assert_eq!(capture.counter(&key("timeout")), 1);
    assert_eq!(
        capture.counter(&key("circuit_open")),
        0,
        "passed on, not counted"
    );
    let snap = layer.handle().snapshot();
    assert_eq!((snap.answered, snap.passed_on), (4, 1));
    assert_eq!(snap.answered_for(ErrorKind::Inner), 3);
}

#[test]
fn a_successful_call_allocates_nothing() {
    let mut value = ServiceBuilder::new()
        .layer(FallbackLayer::value([], 0u64))
        .service(Echo);
    assert_eq!(allocations_per_call(&mut value, |i| i, 10, 1000), 0);
    let mut http = ServiceBuilder::new()
        .layer(FallbackLayer::from_config(&FallbackConfig::default()).unwrap())
        .service(Echo);
    let response = || Response::new(String::new());
    assert_eq!(allocations_per_call(&mut http, |_| response(), 10, 1000), 0);
}

/// The inner service's failure in the allocation tests: zero-sized, so boxing it
/// allocates nothing and what is counted is the fallback's own work.
#[derive(Debug, Clone, Copy)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

/// `calls` failing calls through `svc`, each completing at once; the allocations they made.
fn allocations_of_failing_calls<S>(svc: &mut S, calls: u64, answered: bool) -> u64
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut run = |svc: &mut S| {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let fut = std::pin::pin!(svc.call(0));
        match std::future::Future::poll(fut, &mut cx) {
            Poll::Ready(result) => assert_eq!(result.is_ok(), answered),
            Poll::Pending => panic!("not at once"),
        }
    };
    run(svc);
    let before = tower_prism_testkit::allocations();
    for _ in 0..calls {
        run(svc);
    }
    tower_prism_testkit::allocations() - before
}

#[test]
fn an_error_passed_on_or_answered_with_a_value_allocates_nothing() {
    let refused = service_fn(|_: u64| ready(Err::<u64, _>(Refused)));
    let mut answered = ServiceBuilder::new()
        .layer(FallbackLayer::value([ErrorKind::Inner], 9u64))
        .service(refused);
    assert_eq!(allocations_of_failing_calls(&mut answered, 1000, true), 0);
    let mut passed_on = ServiceBuilder::new()
        .layer(FallbackLayer::value([ErrorKind::CircuitOpen], 9u64))
        .service(refused);
    assert_eq!(allocations_of_failing_calls(&mut passed_on, 1000, false), 0);
    // The counter sees allocations at all: a call that boxes a real error is counted.
    let mut boxing = ServiceBuilder::new()
        .layer(FallbackLayer::value([ErrorKind::CircuitOpen], 9u64))
        .service(service_fn(|_: u64| {
            ready(Err::<u64, _>(String::from("refused")))
        }));
    assert!(allocations_of_failing_calls(&mut boxing, 10, false) >= 10);
}

/// A service whose `poll_ready` fails.
#[derive(Clone)]
struct Broken;

impl Service<u32> for Broken {
    type Response = u32;
    type Error = BoxError;
    type Future = Ready<Result<u32, BoxError>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err(Box::new(Refused)))
    }
    fn call(&mut self, n: u32) -> Self::Future {
        ready(Ok(n))
    }
}

#[tokio::test]
async fn a_poll_ready_error_passes_on_unanswered() {
    let layer = FallbackLayer::value([], 0u32);
    let handle = layer.handle().clone();
    let mut svc = ServiceBuilder::new().layer(layer).service(Broken);
    let error = svc.ready().await.err().unwrap();
    assert!(error.is::<Refused>());
    assert_eq!(handle.snapshot().answered, 0);
}

#[test]
fn the_service_and_its_future_are_send_for_a_server() {
    fn send<T: Send + Sync>(_: &T) {}
    fn send_future<S: Service<R>, R>(_: &S)
    where
        S::Future: Send,
    {
    }
    let config = FallbackConfig::default();
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::from_config(&config).unwrap())
        .service(service_fn(|_: Request<String>| async {
            Err::<Response<String>, BoxError>("down".into())
        }));
    send(&svc);
    send_future::<_, Request<String>>(&svc);
    let backup = service_fn(|_: Error| async { Ok::<_, Infallible>(1u32) });
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::service([], backup))
        .service(service_fn(|n: u32| async move { Ok::<_, Infallible>(n) }));
    send(&svc);
    send_future::<_, u32>(&svc);
}

#[tokio::test]
async fn a_503_answer_says_when_to_come_back_even_without_a_hint() {
    let refused =
        || -> BoxError { Box::new(tower_prism::limit::Error::ConcurrencyLimited { limit: 10 }) };
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::from_config(&FallbackConfig::default()).unwrap())
        .service(http_failing(refused));
    let response = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
}
