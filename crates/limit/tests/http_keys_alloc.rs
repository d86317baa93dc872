//! Reading an HTTP key and passing an admitted call with headers switched off allocate
//! nothing, and with headers on only the two structured fields and the header map: a
//! counting global allocator around 1000 admitted calls, with the requests built
//! beforehand (a header or an extension allocates when it is inserted).

use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use tower_layer::Layer;
use tower_prism_limit::rate::{
    ClientIpKey, HeaderKey, KeyConfig, KeyPart, RateLimitConfig, RateLimitLayer,
};
use tower_prism_testkit::{allocations_per_call, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Answers every request with an empty response, allocating nothing.
#[derive(Clone)]
struct Ok200;

impl tower_service::Service<Request<()>> for Ok200 {
    type Response = Response<()>;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Response<()>, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// 1100 requests from four clients behind one proxy, each with an API key.
fn requests() -> impl FnMut(u64) -> Request<()> {
    let built: Vec<_> = (0..1100u32)
        .map(|i| {
            let mut request = Request::builder()
                .uri("/v1/users/42")
                .header("x-api-key", format!("key-{}", i % 4))
                .header(
                    "x-forwarded-for",
                    format!("203.0.113.{}, 198.51.100.{}", i % 7, i % 4),
                )
                .body(())
                .unwrap();
            let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
            request.extensions_mut().insert(peer);
            request
        })
        .collect();
    let mut built = built.into_iter();
    move |_| built.next().expect("enough requests")
}

#[test]
fn keyed_http_calls_without_headers_allocate_nothing() {
    let key = KeyConfig::combined([
        KeyPart::ClientIp(ClientIpKey::new(1)),
        KeyPart::Header(HeaderKey::new("x-api-key")),
        KeyPart::PathPrefix(2),
        KeyPart::PeerIp,
    ]);
    let config = RateLimitConfig::builder()
        .rate(1_000_000_000)
        .period(Duration::from_secs(1))
        .burst(1_000_000)
        .key(key)
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder(config).build_http().unwrap();
    let mut svc = layer.layer(Ok200);
    assert_eq!(allocations_per_call(&mut svc, requests(), 100, 1000), 0);
}

#[test]
fn headers_on_admitted_calls_cost_the_two_structured_fields_only() {
    let config = RateLimitConfig::builder()
        .rate(1_000_000_000)
        .period(Duration::from_secs(1))
        .burst(1_000)
        .headers(true)
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder(config).build_http().unwrap();
    let mut svc = layer.layer(Ok200);
    // per call: `RateLimit-Policy` and `RateLimit` (one value each, formatted on the
    // stack) and the two tables of the response's header map, which starts empty (4 in
    // all; it was 10 before the numbers came from a table); the three `X-RateLimit-*`
    // numbers allocate nothing
    let allocated = allocations_per_call(&mut svc, requests(), 100, 1000);
    assert!(
        allocated <= 4 * 1000,
        "{allocated} allocations in 1000 calls"
    );
}
