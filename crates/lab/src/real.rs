//! The real mode: the simulated upstream's endpoints behind hyper servers on 127.0.0.1,
//! the stacks over hyper-util clients, on real sockets and timers.
//!
//! A refused call (an endpoint down) aborts the connection, so the client sees a transport
//! error, as it would from a dead server.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::{BoxError, Service, ServiceExt};
use tower_prism::retry::ReplayBody;

use crate::upstream::{Endpoint, EndpointService, Request, Response};

/// Serves `endpoint` over HTTP/1 on a new port of 127.0.0.1, until the runtime ends.
pub async fn serve(endpoint: Endpoint) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| handle(endpoint.clone(), request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

/// Answers one HTTP request with the model's answer; a refusal aborts the connection.
async fn handle(
    endpoint: Endpoint,
    request: http::Request<Incoming>,
) -> Result<http::Response<Empty<Bytes>>, std::io::Error> {
    let (parts, _body) = request.into_parts();
    let model = http::Request::from_parts(parts, ReplayBody::new(String::new(), 16));
    match endpoint.oneshot(model).await {
        Ok(answer) => {
            let (parts, ()) = answer.into_parts();
            Ok(http::Response::from_parts(parts, Empty::new()))
        }
        Err(error) => Err(std::io::Error::other(error.to_string())),
    }
}

/// One endpoint seen through a hyper-util client.
#[derive(Clone)]
pub struct HttpEndpoint {
    client: HttpClient<HttpConnector, Empty<Bytes>>,
    uri: http::Uri,
}

impl HttpEndpoint {
    /// A client endpoint for the server at `address`, sharing `client`'s connection pool.
    pub fn new(client: HttpClient<HttpConnector, Empty<Bytes>>, address: SocketAddr) -> Self {
        let uri = format!("http://{address}/").parse().expect("a valid uri");
        HttpEndpoint { client, uri }
    }
}

/// A pooled HTTP/1 client (call inside the runtime that drives it).
pub fn http_client() -> HttpClient<HttpConnector, Empty<Bytes>> {
    HttpClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http()
}

impl Service<Request> for HttpEndpoint {
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (parts, _body) = request.into_parts();
        let mut out = http::Request::from_parts(parts, Empty::new());
        *out.uri_mut() = self.uri.clone();
        let sent = self.client.request(out);
        Box::pin(async move {
            let (parts, _body) = sent.await?.into_parts();
            Ok(http::Response::from_parts(parts, ()))
        })
    }
}

/// Serves each of `endpoints` on its own port and returns the client side of each.
pub async fn endpoints(endpoints: Vec<Endpoint>) -> std::io::Result<Vec<EndpointService>> {
    let client = http_client();
    let mut out = Vec::new();
    for endpoint in endpoints {
        let address = serve(endpoint).await?;
        out.push(EndpointService::new(HttpEndpoint::new(
            client.clone(),
            address,
        )));
    }
    Ok(out)
}
