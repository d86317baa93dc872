//! `endpoints_from_uris` against real hyper servers on loopback.
#![cfg(feature = "http")]

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};
use tower_prism_balance::{endpoints_from_uris, Balance, BalanceConfig, Error, Strategy};

/// A server answering `<name> <host header> <path>`.
async fn server(name: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let host = req.headers()["host"].to_str().unwrap().to_owned();
                    let body = format!("{name} {host} {}", req.uri().path());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn requests_go_to_each_uri_with_the_authority_rewritten() {
    let uris = [server("a").await, server("b").await];
    let endpoints = endpoints_from_uris::<Empty<Bytes>, _>(&uris).unwrap();
    assert_eq!(endpoints[0].0, uris[0]);
    let mut balance = Balance::<String, _, Request<Empty<Bytes>>>::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::RoundRobin)
                .build()
                .unwrap(),
        )
        .endpoints(endpoints)
        .build()
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let req = Request::get("/hello").body(Empty::new()).unwrap();
        let res = balance.ready().await.unwrap().call(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        seen.push(String::from_utf8(body.to_vec()).unwrap());
    }
    let host = |u: &str| u.trim_start_matches("http://").to_owned();
    assert_eq!(
        seen.iter()
            .filter(|s| **s == format!("a {} /hello", host(&uris[0])))
            .count(),
        2,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|s| **s == format!("b {} /hello", host(&uris[1])))
            .count(),
        2,
        "{seen:?}"
    );

    let err = endpoints_from_uris::<Empty<Bytes>, _>(["https://example.invalid"]).unwrap_err();
    assert!(matches!(err, Error::InvalidUri { .. }));
    assert!(endpoints_from_uris::<Empty<Bytes>, _>(["127.0.0.1:80"]).is_err());
}

/// Credentials in an endpoint URI went out as the `Host` header (`user:secret@host:port`:
/// invalid, and the secret sent to the server and kept in the key). Refused, and the error
/// does not repeat them.
#[test]
fn an_endpoint_uri_with_credentials_is_refused_without_showing_them() {
    let err =
        endpoints_from_uris::<Empty<Bytes>, _>(["http://user:secret@10.0.0.1:8080/"]).unwrap_err();
    assert!(matches!(err, Error::InvalidUri { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        !shown.contains("secret") && shown.contains("***@10.0.0.1"),
        "{shown}"
    );
}
