//! A hyper client balanced over the addresses of a DNS name.
//!
//! It starts a small HTTP server on every address `localhost` has (127.0.0.1, and ::1 where
//! /etc/hosts lists it), all on one port, as the pods behind a Kubernetes headless service
//! are; then it balances requests over whatever `localhost` resolves to, sends a few, and
//! exits.
//!
//! ```sh
//! cargo run -p tower-prism-balance --example dns_hyper
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::{BoxError, Service, ServiceExt};
use tower_prism_balance::{Balance, BalanceConfig, DnsConfig, DnsDiscovery, Strategy, UriEndpoint};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let port = start_servers().await?;

    let config = BalanceConfig::builder()
        .strategy(Strategy::RoundRobin)
        .build()?;
    let mut balance: Balance<SocketAddr, UriEndpoint<Empty<Bytes>>, Request<Empty<Bytes>>> =
        Balance::builder()
            .name("localhost")
            .config(config)
            .build()?;

    // one hyper client per address the name resolves to, re-resolved every second
    let dns = DnsConfig::builder()
        .host("localhost")
        .port(port)
        .interval(Duration::from_secs(1))
        .build()?;
    let discovery = DnsDiscovery::new(dns, |addr: SocketAddr| {
        UriEndpoint::new(&format!("http://{addr}")).expect("a socket address is an authority")
    })
    .spawn(balance.handle())?;
    tokio::time::timeout(Duration::from_secs(5), discovery.resolved()).await?;
    println!(
        "localhost:{port} resolves to {:?}",
        discovery.snapshot().addresses
    );

    for _ in 0..4 {
        let request = Request::get("/hello").body(Empty::new())?;
        let response = balance.ready().await?.call(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        println!("{}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Starts a server on 127.0.0.1 and on every other address of `localhost`, all on the same
/// port; returns the port.
async fn start_servers() -> Result<u16, BoxError> {
    let first = TcpListener::bind("127.0.0.1:0").await?;
    let port = first.local_addr()?.port();
    serve(first);
    for addr in tokio::net::lookup_host(("localhost", port)).await? {
        if addr.ip().is_loopback() && addr != SocketAddr::from(([127, 0, 0, 1], port)) {
            // an address this machine cannot bind (IPv6 switched off) is skipped
            if let Ok(listener) = TcpListener::bind(addr).await {
                serve(listener);
            }
        }
    }
    Ok(port)
}

/// Answers every request with the address it was served on.
fn serve(listener: TcpListener) {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            let answer = move |_: Request<Incoming>| async move {
                let body = format!("hello from {local}");
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
            };
            tokio::spawn(
                http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer)),
            );
        }
    });
}
