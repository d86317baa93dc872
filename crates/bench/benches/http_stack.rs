//! The HTTP server stack of `scripts/http-bench`, in process: `http_errors()` over an
//! `http_server()` policy with a rate limit sized to admit everything and a circuit
//! breaker, against the bare service and a layer that does nothing, per request. What the
//! end-to-end run over wrk measures beside sockets and axum, without their noise; requests
//! are built outside the timed part. `stack_cloned` calls each request through a clone of
//! the stack dropped after it, as axum's `Route` serves requests.
//!
//! `cargo bench -p tower-prism-bench --bench http_stack`

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response};
use tower::ServiceBuilder;
use tower_prism::breaker::BreakerConfig;
use tower_prism::limit::rate::RateLimitConfig;
use tower_prism::{ReliabilityLayer, ServiceBuilderExt};
use tower_prism_testkit::call_now;
use tower_service::Service;

/// Answers 200 at once, with a static body (what the end-to-end route returns).
#[derive(Clone)]
struct Ok200;

impl Service<Request<String>> for Ok200 {
    type Response = Response<&'static str>;
    type Error = Infallible;
    type Future = Ready<Result<Response<&'static str>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        ready(Ok(Response::new("ok")))
    }
}

fn request() -> Request<String> {
    Request::builder()
        .uri("/")
        .header("host", "127.0.0.1:18082")
        .header("user-agent", "wrk")
        .body(String::new())
        .unwrap()
}

fn bench<S>(c: &mut Criterion, name: &str, mut svc: S)
where
    S: Service<Request<String>>,
{
    c.bench_function(name, |b| {
        b.iter_batched(
            request,
            |req| call_now(&mut svc, req),
            BatchSize::SmallInput,
        )
    });
}

/// Each request through a clone of `svc`, dropped after the call.
fn bench_cloned<S>(c: &mut Criterion, name: &str, svc: S)
where
    S: Service<Request<String>> + Clone,
{
    c.bench_function(name, |b| {
        b.iter_batched(
            request,
            |req| call_now(&mut svc.clone(), req),
            BatchSize::SmallInput,
        )
    });
}

fn http_stack(c: &mut Criterion) {
    let rt = tower_prism_bench::runtime();
    let _guard = rt.enter();
    bench(c, "http_server_stack/bare", Ok200);
    bench(
        c,
        "http_server_stack/do_nothing_layer",
        ServiceBuilder::new()
            .layer(tower::layer::util::Identity::new())
            .service(Ok200),
    );
    let layer = ReliabilityLayer::builder()
        .http_server()
        .name("bench")
        .rate_limit(RateLimitConfig::new(1_000_000_000, Duration::from_secs(1)))
        .circuit_breaker(BreakerConfig::default())
        .build()
        .expect("valid policy");
    let stack = ServiceBuilder::new()
        .http_errors()
        .reliability(layer)
        .service(Ok200);
    bench(c, "http_server_stack/stack", stack.clone());
    bench_cloned(c, "http_server_stack/stack_cloned", stack);
}

criterion_group!(benches, http_stack);
criterion_main!(benches);
