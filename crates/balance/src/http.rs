//! Endpoints for the hyper client case: one hyper-util legacy client per upstream URI.

use std::task::{Context, Poll};

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

use crate::error::Error;

/// One upstream: a hyper client that sends every request to this endpoint's scheme and
/// authority, keeping the request's path and query. Cheap to clone (the connection pool is
/// shared).
#[derive(Debug)]
pub struct UriEndpoint<B> {
    client: Client<HttpConnector, B>,
    scheme: Scheme,
    authority: Authority,
}

impl<B> Clone for UriEndpoint<B> {
    fn clone(&self) -> Self {
        UriEndpoint {
            client: self.client.clone(),
            scheme: self.scheme.clone(),
            authority: self.authority.clone(),
        }
    }
}

impl<B> UriEndpoint<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// An endpoint for `uri`, which needs a scheme (`http`) and an authority (`host:port`),
    /// without credentials (`user:password@`).
    pub fn new(uri: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed: Uri = uri
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let scheme = parsed
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("no scheme"))?;
        if scheme != Scheme::HTTP {
            return Err(invalid("only http is supported by the built-in connector"));
        }
        let authority = parsed
            .authority()
            .cloned()
            .ok_or_else(|| invalid("no authority"))?;
        // `user:password@host`: the authority is sent as the `Host` header, and the URI is
        // the endpoint's key in metrics and logs, so credentials there would leak; the
        // error shows the URI without them.
        if let Some((credentials, _)) = authority.as_str().rsplit_once('@') {
            return Err(Error::InvalidUri {
                uri: uri.replacen(credentials, "***", 1),
                reason: "credentials in the URI would be sent in the Host header; send an \
                         Authorization header instead"
                    .to_owned(),
            });
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(UriEndpoint {
            client,
            scheme,
            authority,
        })
    }

    /// The `host:port` requests go to.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }
}

impl<B> Service<Request<B>> for UriEndpoint<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let mut parts = std::mem::take(request.uri_mut()).into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        // scheme, authority and path are all set, so this cannot fail
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        if let Ok(host) = http::HeaderValue::from_str(self.authority.as_str()) {
            request.headers_mut().insert(http::header::HOST, host);
        }
        self.client.request(request)
    }
}

/// Builds one endpoint per URI, keyed by the URI text as given, ready for
/// [`BalanceBuilder::endpoints`](crate::BalanceBuilder::endpoints) or
/// [`BalanceHandle::add`](crate::BalanceHandle::add).
///
/// ```
/// use http_body_util::Empty;
/// use bytes::Bytes;
/// use tower_prism_balance::{endpoints_from_uris, Balance};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let endpoints = endpoints_from_uris::<Empty<Bytes>, _>(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]).unwrap();
/// let balance = Balance::<String, _, http::Request<Empty<Bytes>>>::builder()
///     .endpoints(endpoints)
///     .build()
///     .unwrap();
/// assert_eq!(balance.handle().len(), 2);
/// assert!(endpoints_from_uris::<Empty<Bytes>, _>(["10.0.0.3"]).is_err());
/// # }
/// ```
pub fn endpoints_from_uris<B, I>(uris: I) -> Result<Vec<(String, UriEndpoint<B>)>, Error>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    uris.into_iter()
        .map(|uri| {
            let uri = uri.as_ref();
            Ok((uri.to_owned(), UriEndpoint::new(uri)?))
        })
        .collect()
}
