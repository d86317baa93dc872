//! A tiny gRPC service with no protobuf: UTF-8 strings as messages (a hand-written tonic
//! `Codec`), a server with a unary `Say` and a client-streaming `Collect` method, and the
//! client calls. Shared by the example and by tests/grpc.rs, so neither needs protoc.

#![allow(dead_code)] // each user takes the parts it needs

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::{Status, Streaming};
use tower::BoxError;

/// Encodes and decodes messages as UTF-8 strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Codec;

impl Codec for Utf8Codec {
    type Encode = String;
    type Decode = String;
    type Encoder = Utf8Codec;
    type Decoder = Utf8Codec;

    fn encoder(&mut self) -> Utf8Codec {
        Utf8Codec
    }

    fn decoder(&mut self) -> Utf8Codec {
        Utf8Codec
    }
}

impl Encoder for Utf8Codec {
    type Item = String;
    type Error = Status;

    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for Utf8Codec {
    type Item = String;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| Status::invalid_argument("not UTF-8"))
    }
}

/// What the server does with a request (for `Collect`, its messages joined); the request
/// keeps the HTTP request's metadata and extensions.
pub type Handler = Arc<
    dyn Fn(tonic::Request<String>) -> Pin<Box<dyn Future<Output = Result<String, Status>> + Send>>
        + Send
        + Sync,
>;

/// The `echo.Echo` service: `Say` (unary) and `Collect` (client streaming) both answer
/// with what the handler makes of the message.
#[derive(Clone)]
pub struct EchoServer {
    handler: Handler,
}

impl EchoServer {
    /// A server answering with `handler`.
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(tonic::Request<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, Status>> + Send + 'static,
    {
        EchoServer {
            handler: Arc::new(move |message| Box::pin(handler(message))),
        }
    }
}

impl NamedService for EchoServer {
    const NAME: &'static str = "echo.Echo";
}

impl tower::Service<http::Request<Body>> for EchoServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let handler = self.handler.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(Utf8Codec);
            let response = match request.uri().path() {
                "/echo.Echo/Say" => {
                    let say = tower::service_fn(move |message: tonic::Request<String>| {
                        let answer = handler(message);
                        async move { answer.await.map(tonic::Response::new) }
                    });
                    grpc.unary(say, request).await
                }
                "/echo.Echo/Collect" => {
                    let collect =
                        tower::service_fn(move |stream: tonic::Request<Streaming<String>>| {
                            let handler = handler.clone();
                            async move {
                                let (metadata, extensions, mut stream) = stream.into_parts();
                                let mut joined = String::new();
                                while let Some(message) = stream.message().await? {
                                    joined.push_str(&message);
                                }
                                let request =
                                    tonic::Request::from_parts(metadata, extensions, joined);
                                handler(request).await.map(tonic::Response::new)
                            }
                        });
                    grpc.client_streaming(collect, request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(response)
        })
    }
}

/// A client of `echo.Echo` over any service a tonic client can use (a `Channel`, or a
/// stack over one).
pub struct EchoClient<S> {
    grpc: tonic::client::Grpc<S>,
}

impl<S> EchoClient<S>
where
    S: tonic::client::GrpcService<Body>,
    S::Error: Into<BoxError>,
    S::ResponseBody: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as hyper::body::Body>::Error: Into<BoxError> + Send,
{
    /// A client sending its calls through `service`.
    pub fn new(service: S) -> Self {
        EchoClient {
            grpc: tonic::client::Grpc::new(service),
        }
    }

    /// Calls `Say` with `request`.
    pub async fn say(&mut self, request: tonic::Request<String>) -> Result<String, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.into().to_string()))?;
        let path = PathAndQuery::from_static("/echo.Echo/Say");
        let response = self.grpc.unary(request, path, Utf8Codec).await?;
        Ok(response.into_inner())
    }

    /// Calls `Collect` with a stream of `messages`.
    pub async fn collect(&mut self, messages: Vec<String>) -> Result<String, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.into().to_string()))?;
        let path = PathAndQuery::from_static("/echo.Echo/Collect");
        let stream = tonic::Request::new(futures_util::stream::iter(messages));
        let response = self.grpc.client_streaming(stream, path, Utf8Codec).await?;
        Ok(response.into_inner())
    }
}
