//! Runs one stack `N` times, one call after the other, for a profiler to count (criterion's
//! harness would dominate its counts). The per-call figures in BENCHMARKS.md ("counted
//! rather than timed") come from `scripts/call-count`, which runs this under callgrind for
//! `N` and `2N` calls and divides the difference by `N`, each run less the one-time clock
//! calibration (`once_cell::imp::initialize_or_wait`, inclusive). Stacks: `three` (rate
//! limit, breaker, retry over one service), `deadline` (the same three and a deadline, a
//! 30 s timeout every call arms), `four` (the same three over a balancer of 8), `http` (an
//! `http_server()` policy of a rate limit and a breaker under `http_errors()`),
//! `http-cloned` (the same, each call through a clone of the stack dropped after it, as
//! axum's `Route` serves each request), `http-off` (the same with no stage configured:
//! what the stack's wrapping costs), `bare` (the HTTP route alone), `limit` (the
//! default rate limit alone, unkeyed), `governor` (governor's direct limiter's `check()`
//! and the call, as the `ratelimit` bench drives it), and `limit-keyed` and
//! `governor-keyed` (the same two keyed by the request, 64 keys in turn, as the bench's
//! keyed rows).
//!
//! With `PRISM_RECORDER` set, a Prometheus recorder (`metrics-exporter-prometheus`, as
//! `contrib/` installs it) takes the stages' metrics instead of the `metrics` crate's
//! no-op: what a call costs in a service that exports them.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_prism::balance::BalanceConfig;
use tower_prism::breaker::BreakerConfig;
use tower_prism::deadline::DeadlineConfig;
use tower_prism::limit::rate::RateLimitConfig;
use tower_prism::retry::RetryConfig;
use tower_prism::{ReliabilityLayer, ServiceBuilderExt};
use tower_prism_bench::Noop;

/// A rate that admits every call.
const HUGE: u32 = 1_000_000_000;

/// Keys of the keyed limiters' calls, as the `ratelimit` bench's (request `i` has key
/// `i % KEYS`).
const KEYS: u64 = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let stack = args.next().unwrap_or_else(|| "three".into());
    let calls: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    if std::env::var_os("PRISM_RECORDER").is_some() {
        // Before the stack is built: metric handles bind to the recorder installed then.
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::set_global_recorder(recorder).unwrap();
    }
    let rt = tower_prism_bench::runtime();
    let _guard = rt.enter();
    let rate = || RateLimitConfig::new(HUGE, Duration::from_secs(1));
    let layer = ReliabilityLayer::builder()
        .name("bench")
        .rate_limit(rate())
        .circuit_breaker(BreakerConfig::default())
        .retry(RetryConfig::default())
        .balance(BalanceConfig::default())
        .build()
        .expect("valid policy");
    match stack.as_str() {
        "three" => rt.block_on(drive(layer.layer(Noop), calls, || 1u64)),
        "deadline" => {
            let timeout = DeadlineConfig::builder().timeout(Duration::from_secs(30));
            let with_deadline = ReliabilityLayer::builder()
                .name("bench")
                .rate_limit(rate())
                .deadline(timeout.build().expect("valid deadline"))
                .circuit_breaker(BreakerConfig::default())
                .retry(RetryConfig::default())
                .build()
                .expect("valid policy");
            rt.block_on(drive(with_deadline.layer(Noop), calls, || 1u64))
        }
        "limit" => {
            let limit = tower_prism::limit::rate::RateLimitLayer::from_config(&rate())
                .expect("valid rate limit");
            drive_now(limit.layer(Noop), calls)
        }
        "governor" => drive_now(governed(), calls),
        "limit-keyed" => {
            let limit = tower_prism::limit::rate::RateLimitLayer::from_config(&rate())
                .expect("valid rate limit")
                .key_fn(|request: &u64| *request % KEYS);
            drive_now(limit.layer(Noop), calls)
        }
        "governor-keyed" => drive_now(governed_keyed(), calls),
        "four" => {
            let balanced = layer
                .layer_endpoints::<usize, Noop, u64>((0..8).map(|i| (i, Noop)))
                .expect("valid balancer");
            rt.block_on(drive(balanced, calls, || 1u64))
        }
        "http" | "http-cloned" | "http-off" | "bare" => {
            let route = tower::service_fn(|_: http::Request<String>| async {
                Ok::<_, Infallible>(http::Response::new(String::from("ok")))
            });
            let request = || http::Request::new(String::new());
            if stack == "bare" {
                rt.block_on(drive(route, calls, request))
            } else {
                let mut policy = ReliabilityLayer::builder().http_server().name("bench");
                if stack != "http-off" {
                    policy = policy
                        .rate_limit(rate())
                        .circuit_breaker(BreakerConfig::default());
                }
                let policy = policy.build().expect("valid policy");
                let served = ServiceBuilder::new()
                    .http_errors()
                    .reliability(policy)
                    .service(route);
                if stack == "http-cloned" {
                    rt.block_on(drive_clones(served, calls, request))
                } else {
                    rt.block_on(drive(served, calls, request))
                }
            }
        }
        other => {
            eprintln!(
                "unknown stack {other:?}: three, deadline, four, http, http-cloned, http-off, bare, \
                 limit, governor, limit-keyed or governor-keyed"
            );
            std::process::exit(2);
        }
    }
}

/// `calls` calls, each through a clone of `service` dropped after it, as axum's `Route`
/// serves every request.
async fn drive_clones<S, R>(service: S, calls: u64, request: impl Fn() -> R)
where
    S: Service<R> + Clone,
    S::Error: std::fmt::Debug,
{
    for _ in 0..calls {
        let response = service.clone().oneshot(request()).await.expect("answered");
        std::hint::black_box(response);
    }
}

/// `calls` calls through `service` outside the runtime, as the `ratelimit` bench makes
/// them: `poll_ready`, `call` and one poll of the response with a no-op waker (its
/// services answer at once), so no scheduler work is counted with them.
fn drive_now<S: Service<u64>>(mut service: S, calls: u64) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for request in 0..calls {
        assert!(service.poll_ready(&mut cx).is_ready(), "ready at once");
        let response = std::pin::pin!(service.call(request));
        assert!(
            matches!(response.poll(&mut cx), std::task::Poll::Ready(Ok(_))),
            "answered at once"
        );
    }
}

/// `calls` calls through `service`, each awaiting readiness then the response.
async fn drive<S, R>(mut service: S, calls: u64, request: impl Fn() -> R)
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..calls {
        let response = service
            .ready()
            .await
            .expect("ready")
            .call(request())
            .await
            .expect("answered");
        std::hint::black_box(response);
    }
}

/// A governor limiter in front of [`Noop`]: `check` (the limiter's `check()` or
/// `check_key()` of the request's key), then the call.
struct Governed<C> {
    check: C,
    inner: Noop,
}

/// governor's direct limiter, as the `ratelimit` bench drives it.
fn governed() -> Governed<impl FnMut(u64) -> bool> {
    let huge = std::num::NonZeroU32::new(HUGE).expect("not zero");
    let limiter = governor::RateLimiter::direct(governor::Quota::per_second(huge));
    Governed {
        check: move |_| limiter.check().is_ok(),
        inner: Noop,
    }
}

/// governor's keyed limiter, each request keyed `request % KEYS`.
fn governed_keyed() -> Governed<impl FnMut(u64) -> bool> {
    let huge = std::num::NonZeroU32::new(HUGE).expect("not zero");
    let limiter = governor::RateLimiter::<u64, _, _>::keyed(governor::Quota::per_second(huge));
    Governed {
        check: move |request| limiter.check_key(&(request % KEYS)).is_ok(),
        inner: Noop,
    }
}

impl<C: FnMut(u64) -> bool> Service<u64> for Governed<C> {
    type Response = <Noop as Service<u64>>::Response;
    type Error = <Noop as Service<u64>>::Error;
    type Future = <Noop as Service<u64>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        Service::<u64>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: u64) -> Self::Future {
        assert!((self.check)(request), "sized to admit every call");
        self.inner.call(request)
    }
}
