//! HTTP retries: `ReplayBody` on its own, and a real hyper client and server on 127.0.0.1.
#![cfg(not(loom))]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_retry::{replayable, Idempotent};
use tower_prism_retry::{Backoff, Error, ReplayBody, RetryConfig, RetryLayer};

/// A body of given chunks and optional trailers, that counts how many frames were read.
struct Chunks {
    frames: VecDeque<Frame<Bytes>>,
    polled: Arc<AtomicUsize>,
}

impl Chunks {
    fn new(chunks: &[&'static str], trailers: bool) -> (Self, Arc<AtomicUsize>) {
        let mut frames: VecDeque<_> = chunks
            .iter()
            .map(|c| Frame::data(Bytes::from_static(c.as_bytes())))
            .collect();
        if trailers {
            let mut t = HeaderMap::new();
            t.insert("x-sum", "42".parse().unwrap());
            frames.push_back(Frame::trailers(t));
        }
        let polled = Arc::new(AtomicUsize::new(0));
        (
            Chunks {
                frames,
                polled: polled.clone(),
            },
            polled,
        )
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polled.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(self.frames.pop_front().map(Ok))
    }
    fn size_hint(&self) -> SizeHint {
        let n = self
            .frames
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        SizeHint::with_exact(n)
    }
}

async fn next_frame<B: Body + Unpin>(body: &mut B) -> Option<Frame<B::Data>>
where
    B::Error: std::fmt::Debug,
{
    body.frame().await.map(|f| f.unwrap())
}

#[tokio::test]
async fn replays_data_and_trailers() {
    let (chunks, polled) = Chunks::new(&["ab", "cd", "ef"], true);
    let first = ReplayBody::new(chunks, 1024);
    assert_eq!(first.size_hint().exact(), Some(6));
    let second = first.try_clone().unwrap();
    let collected = first.collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-sum"], "42");
    assert_eq!(collected.to_bytes(), "abcdef");
    let reads = polled.load(Ordering::SeqCst);
    assert_eq!(second.size_hint().exact(), Some(6));
    let collected = second.collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-sum"], "42");
    assert_eq!(collected.to_bytes(), "abcdef");
    assert_eq!(
        polled.load(Ordering::SeqCst),
        reads,
        "the replay read nothing new"
    );
}

/// hyper's clients stop reading a request body at its trailers (HTTP/1 clears the body,
/// HTTP/2 ends the stream after sending them): the body never gets its end polled. A retry's
/// copy replaying that body must still send the trailers; it ended without them.
#[tokio::test]
async fn a_copy_sends_the_trailers_a_reader_that_stopped_at_them_took() {
    let (chunks, _) = Chunks::new(&["ab", "cd"], true);
    let mut first = ReplayBody::new(chunks, 1024);
    let copy = first.try_clone().unwrap();
    assert_eq!(
        next_frame(&mut first).await.unwrap().into_data().unwrap(),
        "ab"
    );
    assert_eq!(
        next_frame(&mut first).await.unwrap().into_data().unwrap(),
        "cd"
    );
    assert!(next_frame(&mut first).await.unwrap().is_trailers());
    drop(first); // the attempt ended at the trailers, the body's end never polled
    let collected = copy.collect().await.unwrap();
    assert_eq!(
        collected.trailers().map(|t| &t["x-sum"]),
        Some(&"42".parse().unwrap())
    );
    assert_eq!(collected.to_bytes(), "abcd");
}

#[tokio::test]
async fn a_copy_continues_where_a_partial_read_stopped() {
    let (chunks, _) = Chunks::new(&["ab", "cd", "ef"], false);
    let mut first = ReplayBody::new(chunks, 1024);
    let copy = first.try_clone().unwrap();
    let frame = next_frame(&mut first).await.unwrap();
    assert_eq!(frame.into_data().unwrap(), "ab");
    drop(first); // the attempt ended after reading one chunk
    assert!(!copy.is_end_stream());
    assert_eq!(copy.collect().await.unwrap().to_bytes(), "abcdef");
}

#[tokio::test]
async fn over_the_limit_streams_once_and_loses_nothing() {
    let (chunks, _) = Chunks::new(&["0123", "4567", "89"], true);
    let first = ReplayBody::new(chunks, 5);
    let early_copy = first.try_clone().unwrap();
    let collected = first.collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-sum"], "42");
    assert_eq!(collected.to_bytes(), "0123456789", "sent complete");
    // no new copy, and a copy taken before cannot send a truncated body
    let mut early_copy = early_copy;
    assert!(!early_copy.is_replayable());
    assert!(early_copy.try_clone().is_none());
    let err = early_copy.frame().await.unwrap().unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::BodyNotReplayable)
    ));
}

#[tokio::test]
async fn two_copies_read_at_once_is_an_error_not_a_mixup() {
    let (chunks, _) = Chunks::new(&["ab", "cd"], false);
    let mut first = ReplayBody::new(chunks, 64);
    let mut second = first.try_clone().unwrap();
    assert!(!second.is_in_use());
    next_frame(&mut first).await.unwrap();
    assert!(second.is_in_use(), "the first copy holds it");
    let err = second.frame().await.unwrap().unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::BodyInUse)
    ));
    drop(first);
    let mut rest = Vec::new();
    while let Some(f) = next_frame(&mut second).await {
        rest.extend_from_slice(&f.into_data().unwrap());
    }
    assert_eq!(rest, b"abcd");
}

#[tokio::test]
async fn empty_bodies_are_end_of_stream() {
    let mut body = ReplayBody::new(http_body_util::Empty::<Bytes>::new(), 64);
    assert!(body.is_end_stream());
    let mut copy = body.try_clone().unwrap();
    assert!(copy.is_end_stream());
    // one copy read at once with another: there is nothing to share
    assert!(body.frame().await.is_none());
    assert!(!copy.is_in_use());
    assert!(copy.frame().await.is_none());
}

/// "ab" at once, then "cd" 100 ms later: an upload still arriving when a hedge is due.
struct SlowUpload {
    sent: u8,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl SlowUpload {
    fn new() -> Self {
        SlowUpload {
            sent: 0,
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
        }
    }
}

impl Body for SlowUpload {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = match self.sent {
            0 => "ab",
            1 => {
                std::task::ready!(std::future::Future::poll(self.pause.as_mut(), cx));
                "cd"
            }
            _ => return Poll::Ready(None),
        };
        self.sent += 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(chunk.as_bytes())))))
    }
}

/// A hedge due while the first attempt is still reading a slow upload waits until the
/// body has been read, then replays it whole, and takes nothing from the budget before.
/// Before, it went at the delay with a copy that failed with `BodyInUse`: the upstream
/// got a broken request, and the hedge cost a budget token.
#[tokio::test(start_paused = true)]
async fn a_hedge_waits_for_a_slow_upload_to_be_read() {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let upstream = tower::service_fn({
        let bodies = bodies.clone();
        move |request: Request<ReplayBody<SlowUpload>>| {
            let bodies = bodies.clone();
            async move {
                let body = request.into_body().collect().await.map(|b| b.to_bytes());
                let whole = body.as_ref().is_ok_and(|b| b == "abcd");
                bodies.lock().unwrap().push(body.map_err(|e| e.to_string()));
                let (wait, status) = if whole {
                    (500, StatusCode::OK)
                } else {
                    (1, StatusCode::SERVICE_UNAVAILABLE)
                };
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let mut response = Response::new(());
                *response.status_mut() = status;
                Ok::<_, tower::BoxError>(response)
            }
        }
    });
    let config = RetryConfig::builder()
        .max_attempts(1)
        .hedge(tower_prism_retry::HedgeConfig::fixed(
            Duration::from_millis(10),
        ))
        .build()
        .unwrap();
    let layer = RetryLayer::builder(config).http().build().unwrap();
    let request = Request::put("http://upstream/")
        .body(ReplayBody::new(SlowUpload::new(), 1024))
        .unwrap();
    let start = tokio::time::Instant::now();
    let response = layer.layer(upstream).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // the hedge at 110 ms, the first delay after the upload ended; the original wins
    assert_eq!(start.elapsed(), Duration::from_millis(600));
    let abcd = Ok(Bytes::from_static(b"abcd"));
    assert_eq!(*bodies.lock().unwrap(), vec![abcd.clone(), abcd]);
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges_sent, s.hedges_won), (1, 0));
}

// ------------------------------------------------------------------ real hyper

#[derive(Default)]
struct Server {
    requests: AtomicUsize,
    bodies: Mutex<Vec<(String, Bytes)>>,
}

/// Answers 503 to the first `failures` requests, then 200; records every request body.
async fn start_server(failures: usize) -> (std::net::SocketAddr, Arc<Server>) {
    start_server_with(failures, None).await
}

/// As [`start_server`], with a `Retry-After` header on each 503 when given.
async fn start_server_with(
    failures: usize,
    retry_after: Option<&'static str>,
) -> (std::net::SocketAddr, Arc<Server>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Server::default());
    let server = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = server.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let method = req.method().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
                        state.bodies.lock().unwrap().push((method, body.clone()));
                        let status = if n <= failures {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::OK
                        };
                        let mut response = Response::builder().status(status);
                        if let (Some(wait), true) = (retry_after, n <= failures) {
                            response = response.header(http::header::RETRY_AFTER, wait);
                        }
                        Ok::<_, Infallible>(
                            response
                                .body(Full::new(Bytes::from(format!("attempt {n}"))))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, state)
}

type Body_ = ReplayBody<Full<Bytes>>;

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Body_> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn retrying(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Body_>,
) -> impl Service<Request<Body_>, Response = Response<Incoming>, Error = tower::BoxError> + Clone {
    RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::fixed(Duration::from_millis(5)))
            .no_budget()
            .build()
            .unwrap(),
    )
    .http()
    .build()
    .unwrap()
    .layer(client)
}

fn request(method: &str, addr: std::net::SocketAddr, body: Bytes, limit: usize) -> Request<Body_> {
    replayable(
        Request::builder()
            .method(method)
            .uri(format!("http://{addr}/"))
            .body(Full::new(body))
            .unwrap(),
        limit,
    )
}

#[tokio::test]
async fn hyper_put_is_retried_with_its_full_body() {
    let (addr, server) = start_server(2).await;
    let mut svc = retrying(client());
    let payload = Bytes::from(vec![b'x'; 10_000]);
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(request("PUT", addr, payload.clone(), 64 * 1024))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, "attempt 3");
    let bodies = server.bodies.lock().unwrap();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|(m, b)| m == "PUT" && *b == payload));
}

#[tokio::test]
async fn hyper_post_is_sent_once_unless_marked_idempotent() {
    let (addr, server) = start_server(1).await;
    let mut svc = retrying(client());
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(request("POST", addr, Bytes::from_static(b"order"), 1024))
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "the 503 comes back as is");
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    let (addr, server) = start_server(1).await;
    let mut req = request("POST", addr, Bytes::from_static(b"order"), 1024);
    req.extensions_mut().insert(Idempotent);
    let response = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn hyper_body_over_the_limit_is_sent_once_and_whole() {
    let (addr, server) = start_server(1).await;
    let mut svc = retrying(client());
    let payload = Bytes::from(vec![b'y'; 50_000]);
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(request("PUT", addr, payload.clone(), 1024))
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "not retried");
    let bodies = server.bodies.lock().unwrap();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].1, payload, "nothing lost");
}

#[tokio::test]
async fn hyper_connection_refused_is_retried_then_wrapped() {
    // a port with nothing listening
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut svc = retrying(client());
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request("GET", addr, Bytes::new(), 1024))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<Error>(),
            Some(Error::RetriesExhausted { attempts: 3, .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn hyper_a_year_long_retry_after_comes_back_at_once_with_its_header() {
    let (addr, server) = start_server_with(usize::MAX, Some("31536000")).await;
    let svc = RetryLayer::builder(RetryConfig::default())
        .http()
        .build()
        .unwrap()
        .layer(client());
    let call = svc.oneshot(request("GET", addr, Bytes::new(), 1024));
    // The guard only turns the old behaviour (a year's wait) into a failure.
    let response = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("not held for the hint")
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "31536000");
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}
