//! The admit path of an HTTP-keyed rate limit: what reading a key off an `http::Request`
//! (a header, a forwarding header behind one proxy, a combination) costs against an
//! unkeyed limiter and a hand-written key closure, and what rate-limit headers on the
//! admitted response add. Requests are built outside the timed part.
//!
//! `cargo bench -p tower-prism-bench --bench http_keys`

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response};
use tower_layer::Layer;
use tower_prism_limit::rate::{
    ClientIpKey, HeaderKey, KeyConfig, KeyPart, RateLimitConfig, RateLimitConfigBuilder,
    RateLimitLayer,
};
use tower_prism_testkit::call_now;
use tower_service::Service;

/// Answers at once, the request as the body: it is then dropped with the output, outside
/// the timed part, as it was built outside it.
#[derive(Clone)]
struct Ok200;

impl Service<Request<()>> for Ok200 {
    type Response = Response<Request<()>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Request<()>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        ready(Ok(Response::new(request)))
    }
}

/// A limiter that admits every call of the run, over 64 API keys and clients.
fn roomy() -> RateLimitConfigBuilder {
    RateLimitConfig::builder()
        .rate(1_000_000_000)
        .period(Duration::from_secs(1))
        .burst(1_000_000)
}

fn request(i: u64) -> Request<()> {
    let n = i % 64;
    let mut request = Request::builder()
        .uri("/v1/users/42")
        .header("x-api-key", format!("key-{n:02}"))
        .header("x-forwarded-for", format!("203.0.113.9, 198.51.100.{n}"))
        .body(())
        .unwrap();
    let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
    request.extensions_mut().insert(peer);
    request
}

fn bench<S: Service<Request<()>>>(c: &mut Criterion, name: &str, mut svc: S) {
    let mut i = 0u64;
    c.bench_function(name, |b| {
        b.iter_batched(
            || {
                i += 1;
                request(i)
            },
            |req| call_now(&mut svc, req),
            BatchSize::SmallInput,
        )
    });
}

fn keyed(key: impl Into<KeyConfig>, headers: bool) -> impl Service<Request<()>> {
    let config = roomy().key(key).headers(headers).build().unwrap();
    RateLimitLayer::builder(config)
        .build_http()
        .unwrap()
        .layer(Ok200)
}

fn http_keys(c: &mut Criterion) {
    let unkeyed = RateLimitLayer::builder(roomy().build().unwrap())
        .build_http()
        .unwrap();
    bench(c, "http_keys/unkeyed", unkeyed.layer(Ok200));
    let closure = RateLimitLayer::from_config(&roomy().build().unwrap())
        .unwrap()
        .key_fn(|req: &Request<()>| req.headers().get("x-api-key").cloned());
    bench(c, "http_keys/closure_header", closure.layer(Ok200));
    let api_key = || KeyPart::Header(HeaderKey::new("x-api-key"));
    bench(c, "http_keys/header", keyed(api_key(), false));
    bench(
        c,
        "http_keys/client_ip",
        keyed(KeyPart::ClientIp(ClientIpKey::new(1)), false),
    );
    let combined = KeyConfig::combined([KeyPart::PathPrefix(2), api_key(), KeyPart::PeerIp]);
    bench(c, "http_keys/combined", keyed(combined, false));
    bench(c, "http_keys/header_with_headers", keyed(api_key(), true));
}

criterion_group!(benches, http_keys);
criterion_main!(benches);
