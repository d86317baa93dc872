//! A server's stack runs its stages in one future (the rate limit, the breaker and the
//! fault stage decide in its `call`; the handler's own future is the stack's). These tests
//! hold it to what the same stages do as nested futures: an HTTP client's stack, the same
//! policy and no retry table, still calls through each stage's own future.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_prism::{Error, ErrorKind, PolicyConfig, ReliabilityConfig, ReliabilityLayer};

type Response = http::Response<String>;

/// Rate limit with headers and a burst, a breaker that sees failures, slow calls and a
/// half-open round of two probes, and a fault stage aborting some calls.
fn policy() -> PolicyConfig {
    ReliabilityConfig::from_toml(
        r#"
        [policy.api.rate_limit]
        rate = 20
        burst = 4
        headers = true
        [policy.api.circuit_breaker]
        window = { type = "count", size = 10 }
        minimum_calls = 5
        failure_rate_threshold = 0.5
        slow_call_duration = "200ms"
        slow_call_rate_threshold = 0.6
        wait_duration = "1s"
        permitted_calls_in_half_open = 2
        [policy.api.fault]
        seed = 7
        abort = 0.1
        "#,
    )
    .unwrap()
    .get("api")
    .unwrap()
    .clone()
}

/// The upstream's answer to the n-th request: a failing stretch, a shedding one (503 with
/// `Retry-After`) and a slow one, in between successes.
async fn answer(n: usize) -> Result<Response, BoxError> {
    let (status, delay_ms) = match n {
        12..=24 => (500, 5),
        40..=44 => (503, 5),
        60..=70 => (200, 400),
        _ => (200, 5),
    };
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let mut response = http::Response::new(String::from("body"));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    if status == 503 {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("2"),
        );
    }
    Ok(response)
}

/// What a caller saw: the status and the rate-limit headers, or the error's kind.
fn seen(result: Result<Response, BoxError>) -> String {
    match result {
        Ok(response) => format!(
            "{} remaining={:?} policy={:?}",
            response.status().as_u16(),
            response.headers().get("x-ratelimit-remaining"),
            response.headers().get("ratelimit-policy"),
        ),
        Err(error) => {
            let error = Error::from_box(error);
            format!("{:?}: {error}", error.kind())
        }
    }
}

/// 100 requests, one every 40 ms, each in its own task (so calls overlap when the
/// upstream is slow), through `service`, their bodies made by `body`: what each caller
/// saw, in request order.
async fn run<S, B>(service: S, body: fn() -> B) -> Vec<String>
where
    S: Service<http::Request<B>, Response = Response, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    let mut calls = Vec::new();
    for n in 0..100usize {
        let service = service.clone();
        let mut request = http::Request::new(body());
        request.extensions_mut().insert(n);
        calls.push(tokio::spawn(
            async move { seen(service.oneshot(request).await) },
        ));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    outcomes
}

fn upstream<B>() -> impl Service<
    http::Request<B>,
    Response = Response,
    Error = BoxError,
    Future = impl Future<Output = Result<Response, BoxError>> + Send,
> + Clone
       + Send
       + 'static {
    service_fn(|request: http::Request<B>| {
        let n = *request.extensions().get::<usize>().unwrap();
        answer(n)
    })
}

#[tokio::test(start_paused = true)]
async fn a_server_stack_decides_every_call_as_the_nested_stages_do() {
    let server = ReliabilityLayer::builder()
        .http_server()
        .name("api")
        .policy(policy())
        .build()
        .unwrap();
    let server_saw = run(server.layer(upstream()), String::new).await;
    let server_breaker = server.snapshot().circuit_breaker.unwrap();

    let client = ReliabilityLayer::builder()
        .http()
        .name("api")
        .policy(policy())
        .build()
        .unwrap();
    // A client's stack replays requests only with a body it can replay (no retry table
    // here: nothing is replayed).
    let replayable = || tower_prism::retry::ReplayBody::new(String::new(), 1024);
    let client_saw = run(client.layer(upstream()), replayable).await;
    let client_breaker = client.snapshot().circuit_breaker.unwrap();

    for (n, (server, client)) in server_saw.iter().zip(&client_saw).enumerate() {
        assert_eq!(server, client, "request {n}");
    }
    assert_eq!(
        format!("{server_breaker:?}"),
        format!("{client_breaker:?}"),
        "the breakers ended apart"
    );
    // The script reached every path: admitted with headers, refused by the rate limit,
    // by the open circuit, and aborted by the fault stage.
    let saw = |what: &str| server_saw.iter().filter(|s| s.contains(what)).count();
    assert!(saw("200 remaining=Some") > 10, "{server_saw:#?}");
    assert!(saw("500 remaining=Some") > 0, "{server_saw:#?}");
    assert!(saw("CircuitOpen") > 0, "{server_saw:#?}");
    assert!(saw("abort") > 0, "{server_saw:#?}");
}

/// An upstream answering 500 while `failing` is set, else 200; `hang` makes its next
/// answer never come, `panic` its next `call` panic.
#[derive(Clone, Default)]
struct Upstream {
    failing: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    panic: Arc<AtomicBool>,
}

impl Service<http::Request<String>> for Upstream {
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<String>) -> Self::Future {
        if self.panic.swap(false, Ordering::SeqCst) {
            panic!("the handler panicked");
        }
        let hang = self.hang.swap(false, Ordering::SeqCst);
        let status = if self.failing.load(Ordering::SeqCst) {
            500
        } else {
            200
        };
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            let mut response = http::Response::new(String::new());
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok(response)
        })
    }
}

/// A server stack whose breaker opens on two failures of two calls, for 1 s, then lets one
/// probe through.
fn one_probe_server() -> ReliabilityLayer<tower_prism::HttpServer> {
    let breaker = tower_prism::breaker::BreakerConfig::builder()
        .window(tower_prism::breaker::Window::Count { size: 2 })
        .minimum_calls(2)
        .failure_rate_threshold(0.5)
        .wait_duration(Duration::from_secs(1))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    ReliabilityLayer::builder()
        .http_server()
        .name("probe")
        .circuit_breaker(breaker)
        .build()
        .unwrap()
}

/// Opens the breaker of `layer` through `service`, waits out its open state and returns
/// with the half-open round's one probe not yet taken.
async fn open_then_wait<S>(
    layer: &ReliabilityLayer<tower_prism::HttpServer>,
    service: &S,
    up: &Upstream,
) where
    S: Service<http::Request<String>, Response = Response, Error = BoxError> + Clone,
{
    up.failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let response = service
            .clone()
            .oneshot(http::Request::new(String::new()))
            .await;
        assert_eq!(response.unwrap().status(), 500);
    }
    let refused = service
        .clone()
        .oneshot(http::Request::new(String::new()))
        .await;
    assert_eq!(
        Error::from_box(refused.unwrap_err()).kind(),
        ErrorKind::CircuitOpen
    );
    up.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        layer.snapshot().circuit_breaker.unwrap().probes_admitted,
        0,
        "no probe taken yet"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_its_answer_gives_its_probe_back() {
    let layer = one_probe_server();
    let up = Upstream::default();
    let service = layer.layer(up.clone());
    open_then_wait(&layer, &service, &up).await;

    up.hang.store(true, Ordering::SeqCst);
    let mut probe = Box::pin(service.clone().oneshot(http::Request::new(String::new())));
    assert!(
        futures_poll(&mut probe).is_pending(),
        "the probe waits on the upstream"
    );
    assert_eq!(layer.snapshot().circuit_breaker.unwrap().probes_admitted, 1);
    drop(probe);

    // The slot is free again: the next call is the probe, and its success closes.
    let response = service
        .clone()
        .oneshot(http::Request::new(String::new()))
        .await;
    assert_eq!(response.unwrap().status(), 200);
    assert_eq!(
        layer.snapshot().circuit_breaker.unwrap().state,
        tower_prism::breaker::State::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_panics_in_its_call_gives_its_probe_back() {
    let layer = one_probe_server();
    let up = Upstream::default();
    let service = layer.layer(up.clone());
    open_then_wait(&layer, &service, &up).await;

    up.panic.store(true, Ordering::SeqCst);
    let mut panicking = service.clone();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        panicking.call(http::Request::new(String::new()))
    }));
    assert!(panicked.is_err());

    let response = service
        .clone()
        .oneshot(http::Request::new(String::new()))
        .await;
    assert_eq!(response.unwrap().status(), 200, "the probe slot came back");
    assert_eq!(
        layer.snapshot().circuit_breaker.unwrap().state,
        tower_prism::breaker::State::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_stack_queues_a_request_over_its_rate() {
    let rate = tower_prism::limit::rate::RateLimitConfig::builder()
        .rate(1)
        .period(Duration::from_millis(100))
        .burst(1)
        .queue_size(4)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let layer = ReliabilityLayer::builder()
        .http_server()
        .name("queue")
        .rate_limit(rate)
        .build()
        .unwrap();
    let service = layer.layer(Upstream::default());
    let start = tokio::time::Instant::now();
    let first = service.clone().oneshot(http::Request::new(String::new()));
    let second = service.clone().oneshot(http::Request::new(String::new()));
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap().status(), 200);
    assert_eq!(second.unwrap().status(), 200, "admitted after its wait");
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
}

/// One poll of `future` with a waker that does nothing.
fn futures_poll<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(std::task::Waker::noop()))
}

#[tokio::test]
async fn a_fault_table_added_by_reload_reaches_a_server_stack_and_leaves_with_it() {
    let quiet = ReliabilityConfig::from_toml("[policy.api.rate_limit]\nrate = 1000")
        .unwrap()
        .get("api")
        .unwrap()
        .clone();
    let layer = ReliabilityLayer::builder()
        .http_server()
        .name("api")
        .policy(quiet.clone())
        .build()
        .unwrap();
    let service = layer.layer(Upstream::default());
    let call = || service.clone().oneshot(http::Request::new(String::new()));
    assert_eq!(call().await.unwrap().status(), 200);

    let mut game_day = quiet.clone();
    game_day.fault = Some(
        tower_prism::fault::FaultConfig::builder()
            .abort(1.0)
            .build()
            .unwrap(),
    );
    layer.reconfigure(&game_day).unwrap();
    let aborted = Error::from_box(call().await.unwrap_err());
    assert_eq!(aborted.kind(), ErrorKind::Inner);
    assert!(aborted.to_string().contains("abort"), "{aborted}");

    layer.reconfigure(&quiet).unwrap();
    assert_eq!(call().await.unwrap().status(), 200);
}

/// A service that must be made ready before each call, as tower's `Buffer` must (a clone
/// of it is not ready): each call answers whether the service it reached was.
#[derive(Default)]
struct ReadyOnce {
    ready: bool,
}

impl Clone for ReadyOnce {
    fn clone(&self) -> Self {
        ReadyOnce { ready: false }
    }
}

impl Service<http::Request<String>> for ReadyOnce {
    type Response = Response;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<String>) -> Self::Future {
        let status = if std::mem::take(&mut self.ready) {
            200
        } else {
            500
        };
        let mut response = http::Response::new(String::new());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        std::future::ready(Ok(response))
    }
}

/// While a key's request waits in the rate limit's queue, another key's request goes
/// through the rate limit's own `call` (the queue decides it, and admits it at once): the
/// service made ready is still the one it calls.
#[tokio::test(start_paused = true)]
async fn a_call_past_the_queue_reaches_the_service_that_was_made_ready() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.api.rate_limit]
        rate = 10
        burst = 1
        queue_size = 4
        max_wait = "1s"
        key = { header = "x-api-key" }
        "#,
    )
    .unwrap();
    let layer = ReliabilityLayer::builder()
        .http_server()
        .name("ready")
        .policy(config.get("api").unwrap().clone())
        .build()
        .unwrap();
    let mut service = layer.layer(ReadyOnce::default());
    let request = |key: &str| {
        http::Request::builder()
            .header("x-api-key", key)
            .body(String::new())
            .unwrap()
    };
    let first = service.ready().await.unwrap().call(request("a")).await;
    assert_eq!(first.unwrap().status(), 200);
    // Key a's bucket is empty: its next request waits in the queue.
    let mut waiting = Box::pin(service.ready().await.unwrap().call(request("a")));
    assert!(futures_poll(&mut waiting).is_pending());
    let other = service.ready().await.unwrap().call(request("b")).await;
    assert_eq!(
        other.unwrap().status(),
        200,
        "key b's call reached a ready service"
    );
    assert_eq!(waiting.await.unwrap().status(), 200);
}
