//! Test and example support: real hyper 1 servers on 127.0.0.1 with faults that can be
//! switched at run time, and a small HTTP client endpoint service.
//!
//! Shared by the integration tests (`mod support;`) and the examples
//! (`#[path = "../tests/support/mod.rs"] mod support;`). Nothing here leaves loopback.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The faults an [`Upstream`] injects, all switchable while it runs.
#[derive(Debug, Default)]
struct Faults {
    /// Answer the next N requests with `error_status`.
    fail_next: AtomicU64,
    /// Answer every request with `error_status` while set.
    failing: AtomicBool,
    /// The status of injected errors (500 unless set).
    error_status: AtomicU16,
    /// Added latency before answering, in milliseconds.
    latency_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
}

/// A local hyper 1 HTTP server on 127.0.0.1 whose behaviour the test controls.
///
/// It answers `200 <name>` to every request unless told to fail, slow down or die.
#[derive(Debug)]
pub struct Upstream {
    name: &'static str,
    addr: SocketAddr,
    faults: Arc<Faults>,
    counters: Arc<Counters>,
    alive: Mutex<Option<watch::Sender<bool>>>,
}

impl Upstream {
    /// Starts a server on a free loopback port.
    pub async fn start(name: &'static str) -> Arc<Upstream> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let upstream = Arc::new(Upstream {
            name,
            addr,
            faults: Arc::default(),
            counters: Arc::default(),
            alive: Mutex::new(None),
        });
        upstream.faults.error_status.store(500, Ordering::Relaxed);
        upstream.serve(listener);
        upstream
    }

    fn serve(&self, listener: TcpListener) {
        let (tx, mut rx) = watch::channel(true);
        *self.alive.lock().unwrap() = Some(tx);
        let faults = self.faults.clone();
        let counters = self.counters.clone();
        let name = self.name;
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = rx.changed() => return, // killed: the listener is dropped
                };
                let _ = stream.set_nodelay(true);
                let faults = faults.clone();
                let counters = counters.clone();
                let mut conn_rx = rx.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                        answer(name, faults.clone(), counters.clone())
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_rx.changed() => {} // killed: drop the connection
                    }
                });
            }
        });
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's name, which it answers with.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Answers the next `n` requests with the error status.
    pub fn fail_next(&self, n: u64) {
        self.faults.fail_next.store(n, Ordering::Relaxed);
    }

    /// Answers every request with the error status while `on`.
    pub fn set_failing(&self, on: bool) {
        self.faults.failing.store(on, Ordering::Relaxed);
    }

    /// The status of injected errors (500 by default).
    pub fn set_error_status(&self, status: u16) {
        self.faults.error_status.store(status, Ordering::Relaxed);
    }

    /// Adds `latency` before every answer.
    pub fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.faults.latency_ms.store(ms, Ordering::Relaxed);
    }

    /// Clears every fault: the server answers 200 at once again.
    pub fn recover(&self) {
        self.fail_next(0);
        self.set_failing(false);
        self.set_latency(Duration::ZERO);
    }

    /// Kills the server: the listener and every open connection are closed, so new
    /// connections are refused.
    pub fn kill(&self) {
        if let Some(tx) = self.alive.lock().unwrap().take() {
            let _ = tx.send(false);
        }
    }

    /// Whether the server is accepting connections.
    pub fn is_alive(&self) -> bool {
        self.alive.lock().unwrap().is_some()
    }

    /// Brings a killed server back on the same port.
    pub async fn revive(&self) -> std::io::Result<()> {
        if self.is_alive() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    /// Requests received so far (answered or failed).
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// Requests answered with an injected error so far.
    pub fn errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn answer(
    name: &'static str,
    faults: Arc<Faults>,
    counters: Arc<Counters>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let latency = faults.latency_ms.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let burst = faults
        .fail_next
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok();
    let status = if burst || faults.failing.load(Ordering::Relaxed) {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        StatusCode::from_u16(faults.error_status.load(Ordering::Relaxed))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        StatusCode::OK
    };
    let mut response = Response::new(Full::new(Bytes::from_static(name.as_bytes())));
    *response.status_mut() = status;
    Ok(response)
}

/// A request/response pair as the tests see them: the status and the collected body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body as text (the upstream's name on success).
    pub body: String,
}

/// A tower service that sends every request to one upstream over a pooled hyper client,
/// and collects the answer into a [`Reply`].
///
/// Requests are [`Get`]s of a path; errors are hyper's (connection refused...). Its future
/// is boxed: it stands for the network, not for the code under test.
#[derive(Clone, Debug)]
pub struct HttpEndpoint {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl HttpEndpoint {
    /// A client for the server at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build(connector);
        HttpEndpoint {
            client,
            base: format!("http://{addr}"),
        }
    }
}

/// A GET request for a path, as [`HttpEndpoint`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Get(pub &'static str);

/// The error of an [`HttpEndpoint`] call.
pub type EndpointError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Get> for HttpEndpoint {
    type Response = Reply;
    type Error = EndpointError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, EndpointError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, Get(path): Get) -> Self::Future {
        let uri = format!("{}{path}", self.base);
        let client = self.client.clone();
        Box::pin(async move {
            let request = Request::get(uri).body(Full::new(Bytes::new()))?;
            let response = client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok(Reply {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        })
    }
}
