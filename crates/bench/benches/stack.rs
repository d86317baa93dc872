//! Per-call cost of the whole stack (rate limit -> circuit breaker -> retry -> balance)
//! over ready no-op services, of the first three stages over one no-op (alone, and with a
//! deadline and a switched-off fault table added), and of a policy with no stage at all
//! (every stage passing calls through), beside (a) tower's own
//! equivalent (RateLimit behind a Buffer, Retry, p2c peak-EWMA Balance, which needs its own
//! Buffer to be cloned by Retry) and (b) tower-resilience's rate limiter + circuit breaker +
//! retry, in the same run. Limits are sized so every call is admitted and nothing fails:
//! this measures the happy path, one request at a time.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_prism::balance::BalanceConfig;
use tower_prism::breaker::BreakerConfig;
use tower_prism::deadline::DeadlineConfig;
use tower_prism::fault::FaultConfig;
use tower_prism::limit::rate::RateLimitConfig;
use tower_prism::retry::RetryConfig;
use tower_prism::Clock;
use tower_prism::ReliabilityLayer;
use tower_prism_bench::Noop;

const ENDPOINTS: usize = 8;
const HUGE: u32 = 1_000_000_000;

/// A tower retry policy that retries errors up to 3 times (never fires here: Noop succeeds).
#[derive(Clone)]
struct Attempts(usize);

impl<Res, E> tower::retry::Policy<u64, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// Runs `iters` calls one after the other, each awaiting readiness then the response.
fn drive<S>(rt: &tokio::runtime::Runtime, svc: &S, iters: u64) -> Duration
where
    S: Service<u64> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut svc = svc.clone();
    rt.block_on(async move {
        let start = Instant::now();
        for i in 0..iters {
            let out = svc.ready().await.unwrap().call(i).await.unwrap();
            black_box(out);
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tower_prism_bench::runtime();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("stack_8_ready_endpoints");

    // tower-prism: rate limit -> circuit breaker -> retry -> balance (p2c peak-EWMA) over 8
    // endpoints.
    let layer = ReliabilityLayer::builder()
        .name("bench")
        .rate_limit(RateLimitConfig::new(HUGE, Duration::from_secs(1)))
        .circuit_breaker(BreakerConfig::default())
        .retry(RetryConfig::default())
        .balance(BalanceConfig::default())
        .build()
        .expect("valid config");
    let prism = layer
        .layer_endpoints::<usize, Noop, u64>((0..ENDPOINTS).map(|i| (i, Noop)))
        .expect("valid balancer");
    group.bench_function("tower_prism_stack", |b| {
        b.iter_custom(|n| drive(&rt, &prism, n))
    });
    // The same three stages as tower-resilience's below, over one Noop (no balancer).
    let prism_unbalanced = tower::Layer::layer(&layer, Noop);
    group.bench_function("tower_prism_no_balancer", |b| {
        b.iter_custom(|n| drive(&rt, &prism_unbalanced, n))
    });
    // The same three stages with a deadline (a 30 s timeout every call arms) and a fault
    // table that is switched off: what the two new stages cost on the happy path.
    let with_deadline = ReliabilityLayer::builder()
        .name("bench")
        .rate_limit(RateLimitConfig::new(HUGE, Duration::from_secs(1)))
        .deadline(
            DeadlineConfig::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("valid deadline"),
        )
        .circuit_breaker(BreakerConfig::default())
        .retry(RetryConfig::default())
        .fault(
            FaultConfig::builder()
                .enabled(false)
                .error(0.1)
                .build()
                .expect("valid faults"),
        )
        .build()
        .expect("valid config");
    let prism_deadline = tower::Layer::layer(&with_deadline, Noop);
    group.bench_function("tower_prism_no_balancer_deadline_fault_off", |b| {
        b.iter_custom(|n| drive(&rt, &prism_deadline, n))
    });
    // A policy with no stage: every stage passes calls through. Against `noop`, the cost
    // of the stages a policy leaves out.
    let empty = ReliabilityLayer::builder()
        .name("bench")
        .build()
        .expect("valid config");
    let prism_empty = tower::Layer::layer(&empty, Noop);
    group.bench_function("tower_prism_no_stage", |b| {
        b.iter_custom(|n| drive(&rt, &prism_empty, n))
    });
    group.bench_function("noop", |b| b.iter_custom(|n| drive(&rt, &Noop, n)));
    // And with the limiter and breaker on tokio's clock (`clock = "tokio"`).
    let tokio_clock = ReliabilityLayer::builder()
        .name("bench")
        .rate_limit({
            let mut c = RateLimitConfig::new(HUGE, Duration::from_secs(1));
            c.clock = Clock::Tokio;
            c
        })
        .circuit_breaker(
            BreakerConfig::builder()
                .clock(Clock::Tokio)
                .build()
                .unwrap(),
        )
        .retry(RetryConfig::default())
        .build()
        .expect("valid config");
    let prism_tokio = tower::Layer::layer(&tokio_clock, Noop);
    group.bench_function("tower_prism_no_balancer_tokio_clock", |b| {
        b.iter_custom(|n| drive(&rt, &prism_tokio, n))
    });

    // tower: Buffer(RateLimit(Retry(Buffer(p2c Balance)))).
    let discover = PeakEwmaDiscover::new::<u64>(
        ServiceList::new::<u64>(vec![Noop; ENDPOINTS]),
        Duration::from_millis(30),
        Duration::from_secs(10),
        CompleteOnResponse::default(),
    );
    let balance = tower::buffer::Buffer::new(tower::balance::p2c::Balance::new(discover), 1024);
    let retry = tower::retry::Retry::new(Attempts(3), balance);
    let limited = tower::limit::RateLimit::new(
        retry,
        tower::limit::rate::Rate::new(u64::from(HUGE), Duration::from_secs(1)),
    );
    let tower_stack = tower::buffer::Buffer::<u64, _>::new(limited, 1024);
    group.bench_function("tower_stack", |b| {
        b.iter_custom(|n| drive(&rt, &tower_stack, n))
    });

    // tower-resilience: rate limiter -> circuit breaker -> retry over one Noop (it has no
    // balancer).
    let resilience = ServiceBuilder::new()
        .layer(
            tower_resilience::ratelimiter::RateLimiterLayer::builder()
                .limit_for_period(HUGE as usize)
                .refresh_period(Duration::from_secs(1))
                .timeout_duration(Duration::from_millis(1))
                .build()
                .expect("valid rate limiter"),
        )
        .layer(
            tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .build()
                .expect("valid breaker"),
        )
        .layer(
            tower_resilience::retry::RetryLayer::<u64, u64, Infallible>::builder()
                .max_attempts(3)
                .build(),
        )
        .service(Noop);
    group.bench_function("tower_resilience_stack", |b| {
        b.iter_custom(|n| drive(&rt, &resilience, n))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
