//! The gRPC profiles against a real tonic server on 127.0.0.1 (the example's `echo.Echo`
//! service, UTF-8 messages, no protoc): classification by `grpc-status`, retries of
//! `UNAVAILABLE` with the request body replayed (unary and client streaming), pushback
//! honoured and "do not retry", the server's rejections as gRPC statuses, and
//! `grpc-timeout` written by the client's deadline stage and read by the server's.
//! Timings are checked with a paused clock, over an in-process service.

#[path = "../examples/grpc/echo.rs"]
mod echo;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use echo::{EchoClient, EchoServer};
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_prism::breaker::BreakerConfig;
use tower_prism::limit::concurrency::ConcurrencyConfig;
use tower_prism::limit::rate::RateLimitConfig;
use tower_prism::retry::{Backoff, BoxedReplayLayer, RetryConfig};
use tower_prism::{
    Grpc, GrpcCode, GrpcServer, Profile, ReliabilityConfig, ReliabilityLayer, RequestDeadline,
    ServiceBuilderExt,
};

/// Every message the server's handler was given, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// A running server; dropping it stops the server.
struct Running {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `echo.Echo` with `handler` behind `layer` (a server policy, or nothing).
async fn serve<L>(layer: L, server: EchoServer) -> Running
where
    L: Layer<tonic::service::Routes> + Clone + Send + 'static,
    L::Service: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<http::Request<Body>>>::Future: Send,
    <L::Service as tower::Service<http::Request<Body>>>::Error: Into<BoxError> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = Server::builder().layer(layer).add_service(server);
    tokio::spawn(
        router.serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            stopped.await.ok();
        }),
    );
    Running { addr, _stop: stop }
}

/// A server whose handler records each message and answers with `answer(call number,
/// message)`.
async fn serve_plain(
    answer: impl Fn(usize, String) -> Result<String, Status> + Send + Sync + 'static,
) -> (Running, Seen) {
    let seen: Seen = Arc::default();
    let server = {
        let seen = seen.clone();
        let answer = Arc::new(answer);
        EchoServer::new(move |request: tonic::Request<String>| {
            let message = request.into_inner();
            let call = {
                let mut seen = seen.lock().unwrap();
                seen.push(message.clone());
                seen.len() - 1
            };
            let answer = answer.clone();
            async move { answer(call, message) }
        })
    };
    (
        serve(tower::layer::util::Identity::new(), server).await,
        seen,
    )
}

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn quick_retries(max_attempts: u32) -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(max_attempts)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .build()
        .unwrap()
}

/// A client through a `Grpc` policy with `retry`, keeping up to `limit` body bytes.
async fn client_with(
    addr: SocketAddr,
    profile: Grpc,
    retry: RetryConfig,
    limit: usize,
) -> EchoClient<impl tonic::client::GrpcService<Body, Error = BoxError, ResponseBody = Body>> {
    let policy = ReliabilityLayer::builder()
        .profile(profile)
        .name("echo-client")
        .retry(retry)
        .build()
        .unwrap();
    EchoClient::new(
        ServiceBuilder::new()
            .layer(BoxedReplayLayer::new(limit, Body::new))
            .reliability(policy)
            .service(channel(addr).await),
    )
}

fn say(text: &str) -> tonic::Request<String> {
    tonic::Request::new(text.to_owned())
}

fn fail_first(
    n: usize,
    status: fn() -> Status,
) -> impl Fn(usize, String) -> Result<String, Status> {
    move |call, message| {
        if call < n {
            Err(status())
        } else {
            Ok(format!("echo: {message}"))
        }
    }
}

#[tokio::test]
async fn unavailable_is_retried_with_the_unary_body_replayed() {
    let (server, seen) = serve_plain(fail_first(2, || Status::unavailable("warming up"))).await;
    let mut client = client_with(server.addr, Grpc::new(), quick_retries(3), 1024).await;

    assert_eq!(client.say(say("hello")).await.unwrap(), "echo: hello");
    assert_eq!(*seen.lock().unwrap(), ["hello", "hello", "hello"]);
}

#[tokio::test]
async fn a_client_stream_within_the_limit_is_replayed_whole() {
    let (server, seen) = serve_plain(fail_first(1, || Status::unavailable("warming up"))).await;
    let mut client = client_with(server.addr, Grpc::new(), quick_retries(3), 1024).await;

    let parts = ["one ", "two ", "three"].map(String::from).to_vec();
    assert_eq!(client.collect(parts).await.unwrap(), "echo: one two three");
    assert_eq!(*seen.lock().unwrap(), ["one two three", "one two three"]);
}

#[tokio::test]
async fn a_client_stream_over_the_limit_is_sent_once() {
    let (server, seen) = serve_plain(fail_first(1, || Status::unavailable("warming up"))).await;
    // each message is framed with a 5-byte gRPC prefix: 3 x (5 + 10) bytes is over 32
    let mut client = client_with(server.addr, Grpc::new(), quick_retries(3), 32).await;

    let parts = vec!["0123456789".to_owned(); 3];
    let status = client.collect(parts).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "not replayable, so not retried"
    );
}

#[tokio::test]
async fn only_retryable_codes_are_retried() {
    // (the status the server answers with, the client's profile, calls it sees)
    type Case = (fn() -> Status, Grpc, usize);
    let cases: [Case; 5] = [
        (|| Status::resource_exhausted("quota"), Grpc::new(), 3),
        (|| Status::internal("bug"), Grpc::new(), 1),
        (|| Status::not_found("no such thing"), Grpc::new(), 1),
        (|| Status::aborted("conflict"), Grpc::new(), 1),
        (
            || Status::aborted("conflict"),
            Grpc::new().retry_on(GrpcCode::Aborted),
            3,
        ),
    ];
    for (status, profile, calls) in cases {
        let (server, seen) = serve_plain(move |_, _| Err(status())).await;
        let mut client = client_with(server.addr, profile, quick_retries(3), 1024).await;
        let got = client.say(say("x")).await.unwrap_err();
        assert_eq!(got.code(), status().code());
        assert_eq!(seen.lock().unwrap().len(), calls, "{:?}", status().code());
    }
}

#[tokio::test]
async fn server_failures_open_the_breaker_and_caller_errors_do_not() {
    let breaker = || {
        BreakerConfig::builder()
            .consecutive_failures(2)
            .wait_duration(Duration::from_secs(60))
            .build()
            .unwrap()
    };
    for (status, opens) in [
        (Status::internal as fn(&'static str) -> Status, true),
        (Status::not_found, false),
        (Status::invalid_argument, false),
    ] {
        let (server, seen) = serve_plain(move |_, _| Err(status("no"))).await;
        let policy = ReliabilityLayer::builder()
            .grpc()
            .name("echo-client")
            .circuit_breaker(breaker())
            .build()
            .unwrap();
        let mut client = EchoClient::new(policy.layer(channel(server.addr).await));
        for _ in 0..3 {
            let _ = client.say(say("x")).await;
        }
        // an open circuit fails the third call fast, before the server
        let expected = if opens { 2 } else { 3 };
        assert_eq!(
            seen.lock().unwrap().len(),
            expected,
            "{:?}",
            status("").code()
        );
        assert_eq!(policy.snapshot().circuit_open, opens);
    }
}

#[tokio::test]
async fn a_pushback_of_do_not_retry_is_obeyed() {
    let (server, seen) = serve_plain(|_, _| {
        let mut status = Status::unavailable("go away");
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
        Err(status)
    })
    .await;
    let mut client = client_with(server.addr, Grpc::new(), quick_retries(3), 1024).await;
    assert_eq!(
        client.say(say("x")).await.unwrap_err().code(),
        Code::Unavailable
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// A Trailers-Only gRPC answer.
fn trailers_only(code: &'static str, pushback: Option<&'static str>) -> http::Response<Body> {
    let mut response = http::Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", code);
    if let Some(ms) = pushback {
        response = response.header("grpc-retry-pushback-ms", ms);
    }
    response.body(Body::default()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_pushback_is_waited_out_before_the_retry() {
    let policy = ReliabilityLayer::builder()
        .grpc()
        .retry(quick_retries(2))
        .build()
        .unwrap();
    let sent_at: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
    let upstream = {
        let sent_at = sent_at.clone();
        service_fn(move |_: http::Request<Body>| {
            let mut sent_at = sent_at.lock().unwrap();
            sent_at.push(tokio::time::Instant::now());
            let first = sent_at.len() == 1;
            async move {
                Ok::<_, BoxError>(match first {
                    true => trailers_only("14", Some("300")),
                    false => trailers_only("0", None),
                })
            }
        })
    };
    let service = ServiceBuilder::new()
        .layer(BoxedReplayLayer::new(1024, Body::new))
        .reliability(policy)
        .service(upstream);
    let response = service
        .oneshot(http::Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "0");
    let sent_at = sent_at.lock().unwrap();
    assert_eq!(sent_at.len(), 2);
    // the pushback, not the 1 ms backoff
    assert_eq!(sent_at[1] - sent_at[0], Duration::from_millis(300));
}

/// A retried gRPC request tells the server how many attempts came before it, in
/// `grpc-previous-rpc-attempts` (gRFC A6); the first attempt carries none.
#[tokio::test(start_paused = true)]
async fn a_retried_request_carries_grpc_previous_rpc_attempts() {
    let policy = ReliabilityLayer::builder()
        .grpc()
        .retry(quick_retries(3))
        .build()
        .unwrap();
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let upstream = {
        let seen = seen.clone();
        service_fn(move |request: http::Request<Body>| {
            let previous = request
                .headers()
                .get("grpc-previous-rpc-attempts")
                .map(|v| v.to_str().unwrap().to_owned());
            let mut seen = seen.lock().unwrap();
            seen.push(previous);
            let code = if seen.len() < 3 { "14" } else { "0" };
            async move { Ok::<_, BoxError>(trailers_only(code, None)) }
        })
    };
    let service = ServiceBuilder::new()
        .layer(BoxedReplayLayer::new(1024, Body::new))
        .reliability(policy)
        .service(upstream);
    let request = http::Request::builder()
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "0");
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, [None, Some("1".to_owned()), Some("2".to_owned())]);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_skipped_the_replay_layer_is_sent_once() {
    let policy = ReliabilityLayer::builder()
        .grpc()
        .retry(quick_retries(3))
        .build()
        .unwrap();
    let calls = Arc::new(Mutex::new(0));
    let upstream = {
        let calls = calls.clone();
        service_fn(move |_: http::Request<Body>| {
            *calls.lock().unwrap() += 1;
            async { Ok::<_, BoxError>(trailers_only("14", None)) }
        })
    };
    let response = policy
        .layer(upstream)
        .oneshot(http::Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(*calls.lock().unwrap(), 1);
}

/// gRFC A6: a client treats `maxAttempts` over 5 as 5. The gRPC client profile makes at
/// most 5 attempts per call whatever `retry.max_attempts` says, at build and after a
/// reload; the generic profile keeps the configured count. Before, the gRPC profile made
/// all 8.
#[tokio::test(start_paused = true)]
async fn grpc_retries_are_capped_at_five_attempts() {
    let eight = unbudgeted(
        RetryConfig::builder()
            .max_attempts(8)
            .backoff(Backoff::fixed(Duration::from_millis(1))),
    );
    let policy = ReliabilityLayer::builder()
        .grpc()
        .retry(eight.clone())
        .build()
        .unwrap();
    let attempts = attempts_against_unavailable;
    assert_eq!(attempts(&policy).await, 5);
    assert_eq!(policy.snapshot().retry.unwrap().max_attempts, 5);

    // a reload to 7 is capped too; one to 4 is kept
    let reload = |n| {
        let mut retry = eight.clone();
        retry.max_attempts = n;
        tower_prism::PolicyConfig::builder()
            .retry(retry)
            .build()
            .unwrap()
    };
    policy.reconfigure(&reload(7)).unwrap();
    assert_eq!(attempts(&policy).await, 5);
    policy.reconfigure(&reload(4)).unwrap();
    assert_eq!(attempts(&policy).await, 4);

    // the generic profile is not gRPC: 8 attempts
    let generic = ReliabilityLayer::builder().retry(eight).build().unwrap();
    let calls = Arc::new(Mutex::new(0));
    let failing = {
        let calls = calls.clone();
        service_fn(move |_: u32| {
            *calls.lock().unwrap() += 1;
            async { Err::<u32, BoxError>("unavailable".into()) }
        })
    };
    generic.layer(failing).oneshot(1).await.unwrap_err();
    assert_eq!(*calls.lock().unwrap(), 8);
}

/// gRFC A6 caps a hedging policy's `maxAttempts` at 5 as well: a gRPC round sends the
/// attempt and at most 4 hedges, whatever `retry.hedge.max_hedged` says (8 sent 9).
#[tokio::test(start_paused = true)]
async fn grpc_hedged_rounds_are_capped_at_five_attempts() {
    let hedged = unbudgeted(
        RetryConfig::builder()
            .max_attempts(1)
            .hedge(tower_prism::retry::HedgeConfig::fixed(Duration::ZERO).max_hedged(8)),
    );
    let policy = ReliabilityLayer::builder()
        .grpc()
        .retry(hedged)
        .build()
        .unwrap();
    assert_eq!(
        attempts_against_unavailable(&policy).await,
        5,
        "the attempt and 4 hedges"
    );
}

/// gRFC A6: a method has a retry policy or a hedging policy, never both. A gRPC policy
/// with `retry.hedge` and `retry.max_attempts` over 1 is refused, naming
/// `retry.max_attempts`, at build and at reload (which then changes nothing); hedging
/// alone is `max_attempts = 1`. Both were accepted, and a call made up to 5 rounds of 5
/// attempts: 25 for one call. The generic profile, not gRPC, still takes both.
#[tokio::test(start_paused = true)]
async fn grpc_refuses_retries_and_hedging_together_at_build_and_reload() {
    let hedge = || tower_prism::retry::HedgeConfig::fixed(Duration::ZERO).max_hedged(4);
    let both = unbudgeted(
        RetryConfig::builder()
            .max_attempts(5)
            .backoff(Backoff::fixed(Duration::from_millis(1)))
            .hedge(hedge()),
    );
    let error = ReliabilityLayer::builder()
        .grpc()
        .retry(both.clone())
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "retry.max_attempts", "{error}");
    assert!(error.to_string().contains("never both"), "{error}");

    let hedging = unbudgeted(RetryConfig::builder().max_attempts(1).hedge(hedge()));
    let policy = ReliabilityLayer::builder()
        .name("echo")
        .grpc()
        .retry(hedging)
        .build()
        .unwrap();
    let reload = tower_prism::PolicyConfig::builder()
        .retry(both.clone())
        .build()
        .unwrap();
    let error = policy.reconfigure(&reload).unwrap_err();
    assert_eq!(
        error.field(),
        Some("policy.echo.retry.max_attempts"),
        "{error}"
    );
    assert_eq!(policy.snapshot().retry.unwrap().max_attempts, 1);
    assert_eq!(
        attempts_against_unavailable(&policy).await,
        5,
        "one round: the attempt and 4 hedges"
    );

    assert!(ReliabilityLayer::builder().retry(both).build().is_ok());
}

/// `retry` with its budget off, so that every attempt it allows is made.
fn unbudgeted(retry: tower_prism::retry::RetryConfigBuilder) -> RetryConfig {
    retry
        .budget(
            tower_prism::retry::BudgetConfig::builder()
                .enabled(false)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// An upstream answering every call `UNAVAILABLE` (Trailers-Only), and its call count.
// The closure's service can only be named by its bounds.
#[allow(clippy::type_complexity)]
fn unavailable_upstream() -> (
    impl Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = BoxError,
            Future = impl std::future::Future<Output = Result<http::Response<Body>, BoxError>> + Send,
        > + Clone
        + Send,
    Arc<Mutex<u32>>,
) {
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let upstream = service_fn(move |_: http::Request<Body>| {
        *counted.lock().unwrap() += 1;
        async { Ok::<_, BoxError>(trailers_only("14", None)) }
    });
    (upstream, calls)
}

/// The attempts one call through `policy` (its requests replayable) makes to an upstream
/// answering every one UNAVAILABLE, whose status the call then answers with.
async fn attempts_against_unavailable(policy: &ReliabilityLayer<Grpc>) -> u32 {
    let (upstream, calls) = unavailable_upstream();
    let response = ServiceBuilder::new()
        .layer(BoxedReplayLayer::new(1024, Body::new))
        .reliability(policy.clone())
        .service(upstream)
        .oneshot(http::Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "14");
    let attempts = *calls.lock().unwrap();
    attempts
}

/// A server behind `policy` and `grpc_errors`, whose handler sleeps for `work` and then
/// answers with the time left of its request's deadline (in ms), or "none".
async fn serve_policy(policy: ReliabilityLayer<GrpcServer>, work: Duration) -> Running {
    let server = EchoServer::new(move |request: tonic::Request<String>| async move {
        let deadline = request.extensions().get::<RequestDeadline>().copied();
        tokio::time::sleep(work).await;
        Ok(match deadline {
            Some(deadline) => deadline.remaining().as_millis().to_string(),
            None => "none".to_owned(),
        })
    });
    serve(
        ServiceBuilder::new().grpc_errors().reliability(policy),
        server,
    )
    .await
}

fn server_policy(toml: &str) -> ReliabilityLayer<GrpcServer> {
    let config = ReliabilityConfig::from_toml(toml).unwrap();
    ReliabilityLayer::from_config_as(&config, "echo-server", GrpcServer).unwrap()
}

#[tokio::test]
async fn a_shed_call_is_resource_exhausted_with_a_pushback() {
    let policy = server_policy(
        r#"
        [policy.echo-server.rate_limit]
        rate = 1
        period = "1m"
        "#,
    );
    let server = serve_policy(policy, Duration::ZERO).await;
    let mut client = EchoClient::new(channel(server.addr).await);
    client.say(say("first")).await.unwrap();
    let shed = client.say(say("second")).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted);
    assert!(
        shed.message().starts_with("rate_limited"),
        "{}",
        shed.message()
    );
    let pushback: u64 = shed
        .metadata()
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60_000).contains(&pushback), "{pushback}");
}

#[tokio::test]
async fn a_full_concurrency_limit_is_unavailable() {
    let policy = ReliabilityLayer::builder()
        .grpc_server()
        .name("echo-server")
        .concurrency_limit(ConcurrencyConfig::fixed(1))
        .build()
        .unwrap();
    // "slow" holds the only permit until the test ends; it says when it has it
    let started = Arc::new(tokio::sync::Notify::new());
    let server = {
        let started = started.clone();
        EchoServer::new(move |request: tonic::Request<String>| {
            let started = started.clone();
            async move {
                if request.get_ref() == "slow" {
                    started.notify_one();
                    std::future::pending::<()>().await;
                }
                Ok(request.into_inner())
            }
        })
    };
    let server = serve(
        ServiceBuilder::new().grpc_errors().reliability(policy),
        server,
    )
    .await;
    let channel = channel(server.addr).await;
    let mut busy = EchoClient::new(channel.clone());
    let slow = tokio::spawn(async move { busy.say(say("slow")).await });
    started.notified().await;

    let refused = EchoClient::new(channel)
        .say(say("quick"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().starts_with("concurrency_limited"),
        "{}",
        refused.message()
    );
    slow.abort();
}

#[tokio::test]
async fn an_open_circuit_is_unavailable_with_a_pushback() {
    let policy = ReliabilityLayer::builder()
        .grpc_server()
        .name("echo-server")
        .circuit_breaker(
            BreakerConfig::builder()
                .consecutive_failures(1)
                .wait_duration(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let server = EchoServer::new(|_: tonic::Request<String>| async {
        Err::<String, _>(Status::internal("bug"))
    });
    let server = serve(
        ServiceBuilder::new().grpc_errors().reliability(policy),
        server,
    )
    .await;
    let mut client = EchoClient::new(channel(server.addr).await);
    assert_eq!(
        client.say(say("x")).await.unwrap_err().code(),
        Code::Internal
    );
    let open = client.say(say("x")).await.unwrap_err();
    assert_eq!(open.code(), Code::Unavailable);
    assert!(
        open.message().starts_with("circuit_open"),
        "{}",
        open.message()
    );
    assert!(open.metadata().get("grpc-retry-pushback-ms").is_some());
}

#[tokio::test]
async fn a_deadline_is_deadline_exceeded() {
    let policy = server_policy(
        r#"
        [policy.echo-server.deadline]
        timeout = "50ms"
        "#,
    );
    let server = serve_policy(policy, Duration::from_secs(30)).await;
    let mut client = EchoClient::new(channel(server.addr).await);
    let late = client.say(say("x")).await.unwrap_err();
    assert_eq!(late.code(), Code::DeadlineExceeded);
    assert!(late.message().starts_with("timeout"), "{}", late.message());
}

#[tokio::test]
async fn grpc_timeout_is_written_by_the_client_and_read_by_the_server() {
    let server = serve_policy(
        server_policy(
            r#"
            [policy.echo-server.deadline]
            header = "grpc-timeout"
            "#,
        ),
        Duration::ZERO,
    )
    .await;
    let client_config = ReliabilityConfig::from_toml(
        r#"
        [policy.echo-client.deadline]
        timeout = "5s"
        header = "grpc-timeout"
        "#,
    )
    .unwrap();
    let policy =
        ReliabilityLayer::from_config_as(&client_config, "echo-client", Grpc::new()).unwrap();
    let mut client = EchoClient::new(policy.layer(channel(server.addr).await));
    let left: u64 = client.say(say("x")).await.unwrap().parse().unwrap();
    assert!((4_000..=5_000).contains(&left), "{left} ms left");

    // a caller's own tonic timeout is read the same way
    let mut plain = EchoClient::new(channel(server.addr).await);
    let mut request = say("x");
    request.set_timeout(Duration::from_secs(3));
    let left: u64 = plain.say(request).await.unwrap().parse().unwrap();
    assert!((2_000..=3_000).contains(&left), "{left} ms left");

    // a server that names no header reads none
    let server = serve_policy(
        server_policy("[policy.echo-server.deadline]"),
        Duration::ZERO,
    )
    .await;
    let mut client = EchoClient::new(policy.layer(channel(server.addr).await));
    assert_eq!(client.say(say("x")).await.unwrap(), "none");
}

#[tokio::test(start_paused = true)]
async fn the_client_writes_the_time_left_in_grpcs_syntax() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.echo-client.deadline]
        timeout = "1500ms"
        header = "grpc-timeout"
        "#,
    )
    .unwrap();
    let policy = ReliabilityLayer::from_config_as(&config, "echo-client", Grpc::new()).unwrap();
    let upstream = service_fn(|request: http::Request<Body>| async move {
        let header = request.headers()["grpc-timeout"]
            .to_str()
            .unwrap()
            .to_owned();
        Ok::<_, BoxError>(http::Response::new(header))
    });
    let response = policy
        .layer(upstream)
        .oneshot(http::Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.body(), "1500000u");
}

#[tokio::test]
async fn a_client_stack_under_grpc_errors_fails_with_grpc_codes() {
    let (server, seen) = serve_plain(|_, message| Ok(message)).await;
    let policy = || {
        ReliabilityLayer::builder()
            .grpc()
            .name("echo-client")
            .rate_limit(RateLimitConfig::new(1, Duration::from_secs(60)))
            .build()
            .unwrap()
    };
    // without it, tonic reads the stack's error as UNKNOWN
    let mut plain = EchoClient::new(policy().layer(channel(server.addr).await));
    plain.say(say("x")).await.unwrap();
    assert_eq!(plain.say(say("x")).await.unwrap_err().code(), Code::Unknown);

    let mut client = EchoClient::new(
        ServiceBuilder::new()
            .grpc_errors()
            .reliability(policy())
            .service(channel(server.addr).await),
    );
    client.say(say("x")).await.unwrap();
    let shed = client.say(say("x")).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted);
    assert!(shed.metadata().get("grpc-retry-pushback-ms").is_some());
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "the shed calls never left the client"
    );
}

/// A client's game day answers with a gRPC status (`grpc_code`, Envoy's
/// `abort.grpc_status`): tonic sees `UNAVAILABLE` with the fault's message, and the retry
/// stage above the fault retries it as it would a real one. A fault could only carry an
/// HTTP status (`grpc_code` was an unknown field).
#[tokio::test]
async fn a_grpc_status_fault_is_that_status_to_the_client_and_its_retries() {
    let (server, seen) = serve_plain(|_, message| Ok(message)).await;
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.echo-client.retry]
        [policy.echo-client.fault]
        status = { rate = 1.0, grpc_code = 14 }
        "#,
    )
    .unwrap();
    let policy = ReliabilityLayer::from_config_as(&config, "echo-client", Grpc::new()).unwrap();
    let mut client = EchoClient::new(
        ServiceBuilder::new()
            .layer(BoxedReplayLayer::new(1024, Body::new))
            .reliability(policy.clone())
            .service(channel(server.addr).await),
    );
    let failed = client.say(say("x")).await.unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable);
    assert_eq!(failed.message(), "injected fault");
    let fault = policy.snapshot().fault.unwrap();
    assert_eq!((fault.injected_statuses, fault.calls), (3, 3), "retried");
    assert!(seen.lock().unwrap().is_empty(), "no call left the client");
}

/// A server's game day answers with the gRPC status its fault names, as the handler
/// failing the call would.
#[tokio::test]
async fn a_grpc_status_fault_is_that_status_from_the_server() {
    let policy = server_policy(
        r#"
        [policy.echo-server.fault]
        status = { rate = 1.0, grpc_code = 5 }
        "#,
    );
    let server = serve_policy(policy.clone(), Duration::ZERO).await;
    let mut client = EchoClient::new(channel(server.addr).await);
    let failed = client.say(say("x")).await.unwrap_err();
    assert_eq!(failed.code(), Code::NotFound);
    assert_eq!(failed.message(), "injected fault");
    assert_eq!(policy.snapshot().fault.unwrap().injected_statuses, 1);
}

#[global_allocator]
static GLOBAL: tower_prism_testkit::CountingAlloc = tower_prism_testkit::CountingAlloc;

#[test]
fn classifying_a_grpc_answer_allocates_nothing() {
    use tower_prism::{Classify, GrpcClassifier, Outcome};
    let answers = [
        trailers_only("14", Some("250")),
        trailers_only("8", Some("-1")),
        trailers_only("0", None),
        http::Response::new(Body::empty()),
    ];
    let classify = GrpcClassifier::new().retry_on(GrpcCode::Aborted);
    let before = tower_prism_testkit::allocations();
    let mut retryable = 0;
    for _ in 0..1_000 {
        for answer in &answers {
            let result: Result<_, &BoxError> = Ok(answer);
            retryable += usize::from(classify.classify(result) == Outcome::RETRYABLE);
            let _ = classify.retry_after(result);
        }
    }
    assert_eq!(tower_prism_testkit::allocations() - before, 0);
    assert_eq!(retryable, 1_000);
}

#[test]
fn a_grpc_stack_allocates_nothing_per_call() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let layer = ReliabilityLayer::builder()
        .grpc()
        .name("alloc")
        .circuit_breaker(BreakerConfig::default())
        .retry(RetryConfig::default())
        .build()
        .unwrap();
    let upstream = service_fn(|_: http::Request<()>| {
        std::future::ready(Ok::<_, BoxError>(http::Response::new(())))
    });
    let mut stack = layer.layer(upstream);
    let allocated = tower_prism_testkit::allocations_per_call(
        &mut stack,
        |_| http::Request::new(()),
        1_000,
        10_000,
    );
    assert_eq!(allocated, 0, "{allocated} allocations in 10,000 calls");
}

#[test]
fn the_profiles_say_what_they_can_do() {
    assert!(Grpc::new().can_retry());
    assert!(!GrpcServer.can_retry());
    let err = ReliabilityLayer::builder()
        .grpc_server()
        .retry(RetryConfig::default())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("retry"), "{err}");
}
