//! A tonic server and client, both behind tower-prism, on 127.0.0.1; no protoc needed
//! (messages are UTF-8 strings, see echo.rs). It stops on its own.
//!
//! - The server's policy limits it to 3 calls a minute; its rejections reach the client
//!   as gRPC statuses (`RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms`), not HTTP 429s.
//! - The server fails the first call with `UNAVAILABLE`; the client's policy retries it,
//!   replaying the request body, and sends `grpc-timeout` from its deadline.
//!
//! Run with `cargo run --example grpc`.

mod echo;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tower::ServiceBuilder;
use tower_prism::retry::BoxedReplayLayer;
use tower_prism::{Grpc, GrpcServer, ReliabilityConfig, ReliabilityLayer, ServiceBuilderExt};

use echo::{EchoClient, EchoServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.echo-server.rate_limit]
        rate = 3
        period = "1m"
        [policy.echo-server.deadline]
        header = "grpc-timeout"

        [policy.echo-client.deadline]
        timeout = "2s"
        header = "grpc-timeout"
        [policy.echo-client.retry]
        max_attempts = 3
        "#,
    )?;

    // The server: the first call fails with UNAVAILABLE, the others echo.
    let calls = Arc::new(AtomicU32::new(0));
    let server = EchoServer::new(move |request: tonic::Request<String>| {
        let call = calls.fetch_add(1, Ordering::Relaxed);
        async move {
            match call {
                0 => Err(tonic::Status::unavailable("warming up")),
                _ => Ok(format!("echo: {}", request.into_inner())),
            }
        }
    });
    let server_policy = ReliabilityLayer::from_config_as(&config, "echo-server", GrpcServer)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        Server::builder()
            .layer(
                ServiceBuilder::new()
                    .grpc_errors()
                    .reliability(server_policy),
            )
            .add_service(server)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                stopped.await.ok();
            }),
    );

    // The client: request bodies kept (up to 64 KiB) so that a retry can send them again.
    let client_policy = ReliabilityLayer::from_config_as(&config, "echo-client", Grpc::new())?;
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = EchoClient::new(
        ServiceBuilder::new()
            .layer(BoxedReplayLayer::new(64 * 1024, tonic::body::Body::new))
            .reliability(client_policy.clone())
            .service(channel),
    );

    let answer = client.say(tonic::Request::new("hello".into())).await?;
    println!(
        "say(hello) -> {answer:?}, after {} retry",
        client_policy.snapshot().retry.map_or(0, |r| r.retries)
    );
    for word in ["two", "three"] {
        match client.say(tonic::Request::new(word.into())).await {
            Ok(answer) => println!("say({word}) -> {answer:?}"),
            Err(status) => println!(
                "say({word}) -> {:?}: {:?}, pushback {:?} ms",
                status.code(),
                status.message(),
                status.metadata().get("grpc-retry-pushback-ms")
            ),
        }
    }

    stop.send(()).ok();
    tokio::time::timeout(Duration::from_secs(5), serving).await???;
    Ok(())
}
