use std::collections::VecDeque;
use std::pin::Pin;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use tower::{service_fn, ServiceExt};
use tower_prism_core::BoxError;

use super::*;

type Boxed = UnsyncBoxBody<Bytes, BoxError>;

/// A client stream: one frame per chunk.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

fn stream(chunks: &[&'static str]) -> Boxed {
    Boxed::new(Chunks(
        chunks
            .iter()
            .map(|c| Bytes::from_static(c.as_bytes()))
            .collect(),
    ))
}

fn layer(limit: usize) -> BoxedReplayLayer<Boxed> {
    BoxedReplayLayer::new(limit, Boxed::new)
}

async fn text(body: Boxed) -> String {
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// What the service saw: the body it read, and the bodies of two replays made before
/// (template) and after (retry) it read its own.
async fn sent_and_replayed(limit: usize, chunks: &[&'static str]) -> (String, Option<String>) {
    let service = layer(limit).layer(service_fn(|request: Request<Boxed>| async move {
        assert!(ReplayBoxed.can_replay(&request));
        let template = ReplayBoxed.replay(&request).unwrap();
        let sent = text(request.into_body()).await;
        let replayed = match ReplayBoxed.can_replay(&template) {
            true => Some(text(ReplayBoxed.replay(&template).unwrap().into_body()).await),
            false => {
                assert!(ReplayBoxed.replay(&template).is_none());
                None
            }
        };
        Ok::<_, BoxError>((sent, replayed))
    }));
    let request = Request::post("/echo.Echo/Say")
        .header("te", "trailers")
        .body(stream(chunks))
        .unwrap();
    service.oneshot(request).await.unwrap()
}

#[tokio::test]
async fn a_client_stream_within_the_limit_is_replayed_whole() {
    let (sent, replayed) = sent_and_replayed(64, &["one ", "two ", "three"]).await;
    assert_eq!(sent, "one two three");
    assert_eq!(replayed.as_deref(), Some("one two three"));
}

#[tokio::test]
async fn a_stream_over_the_limit_is_sent_whole_once() {
    let (sent, replayed) = sent_and_replayed(6, &["one ", "two ", "three"]).await;
    assert_eq!(sent, "one two three");
    assert_eq!(replayed, None);
}

#[tokio::test]
async fn a_copy_keeps_the_method_uri_headers_and_extensions() {
    let service = layer(64).layer(service_fn(|request: Request<Boxed>| async move {
        let copy = ReplayBoxed.replay(&request).unwrap();
        assert_eq!(copy.method(), http::Method::POST);
        assert_eq!(copy.uri(), "/echo.Echo/Say");
        assert_eq!(copy.headers()["grpc-timeout"], "1S");
        assert_eq!(copy.extensions().get::<u32>(), Some(&7));
        // the copy can be copied again (a third attempt)
        assert!(ReplayBoxed.replay(&copy).is_some());
        Ok::<_, BoxError>(())
    }));
    let mut request = Request::post("/echo.Echo/Say")
        .header("grpc-timeout", "1S")
        .body(stream(&["x"]))
        .unwrap();
    request.extensions_mut().insert(7u32);
    service.oneshot(request).await.unwrap();
}

#[tokio::test]
async fn a_request_that_skipped_the_layer_is_sent_once() {
    let request = Request::new(stream(&["x"]));
    assert!(!ReplayBoxed.can_replay(&request));
    assert!(ReplayBoxed.replay(&request).is_none());
}

#[tokio::test]
async fn the_layer_twice_wraps_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // only this test reboxes through this function
    static REBOXED: AtomicUsize = AtomicUsize::new(0);
    let counting = BoxedReplayLayer::new(64, |body| {
        REBOXED.fetch_add(1, Ordering::Relaxed);
        Boxed::new(body)
    });
    let inner = service_fn(|request: Request<Boxed>| async move {
        Ok::<_, BoxError>(text(request.into_body()).await)
    });
    let service = counting.layer(counting.layer(inner));
    let sent = service.oneshot(Request::new(stream(&["x"]))).await.unwrap();
    assert_eq!(sent, "x");
    assert_eq!(REBOXED.load(Ordering::Relaxed), 1);
}
