//! The concurrency limit's admit-and-complete path allocates nothing: a counting global
//! allocator around 1000 calls that each take a permit, call the inner service, feed the
//! algorithm and give the permit back.

use std::fmt;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower_layer::Layer;
use tower_prism_limit::concurrency::{
    AimdConfig, ConcurrencyConfig, ConcurrencyLimit, ConcurrencyLimitLayer, GradientConfig,
};
use tower_prism_testkit::{allocations, CountingAlloc};
use tower_service::Service;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Answers at once; `Err` for odd requests, so failures (and limit changes) are exercised.
#[derive(Clone, Copy)]
struct Echo;

/// A zero-sized error: boxing it into a `BoxError` allocates nothing, so the count below
/// is the limiter's alone.
#[derive(Debug)]
struct Odd;

impl fmt::Display for Odd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("odd")
    }
}

impl std::error::Error for Odd {}

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Odd;
    type Future = Ready<Result<u64, Odd>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Odd>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: u64) -> Self::Future {
        ready(if req.is_multiple_of(2) {
            Ok(req)
        } else {
            Err(Odd)
        })
    }
}

/// Like `tower_prism_testkit::allocations_per_call`, but odd calls fail (and must).
fn allocations_per_call<S: Service<u64>>(svc: &mut S) -> u64 {
    let mut cx = Context::from_waker(Waker::noop());
    let mut run = |svc: &mut S, i: u64| {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let fut = pin!(svc.call(i));
        assert!(
            fut.poll(&mut cx).is_ready(),
            "call {i} did not finish at once"
        );
    };
    for i in 0..100 {
        run(svc, i); // warm-up: metrics handles, lazy statics
    }
    let before = allocations();
    for i in 0..1_000 {
        run(svc, i);
    }
    allocations() - before
}

#[test]
fn admitted_calls_allocate_nothing() {
    let aimd = ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .min_limit(1)
            .max_limit(100)
            .algorithm({
                let mut c = AimdConfig::default();
                c.latency_threshold = Some(Duration::from_secs(1));
                c
            })
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(allocations_per_call(&mut aimd.layer(Echo)), 0, "aimd");

    // `max_wait` configured, but nobody has to wait.
    let gradient = ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .min_limit(1)
            .max_limit(100)
            .algorithm(GradientConfig::default())
            .max_wait(Duration::from_millis(10))
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        allocations_per_call(&mut gradient.layer(Echo)),
        0,
        "gradient"
    );

    // The default rule (Vegas).
    let vegas = ConcurrencyLimitLayer::from_config(&ConcurrencyConfig::default()).unwrap();
    assert_eq!(allocations_per_call(&mut vegas.layer(Echo)), 0, "vegas");
}

#[test]
fn pass_through_calls_allocate_nothing() {
    let mut open = ConcurrencyLimit::<Echo>::pass_through(Echo);
    assert_eq!(allocations_per_call(&mut open), 0, "pass-through");
}
