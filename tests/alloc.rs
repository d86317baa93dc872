//! The stack's hot path allocates nothing: poll_ready, call and the response future, after
//! warm-up, through rate limit -> concurrency limit -> deadline -> circuit breaker -> retry
//! -> balance -> fault injection (switched off) over ready endpoints (and without the
//! balancer), and through a stack whose stages are all left out (each passes calls
//! through).

use std::time::Duration;

use tower::Layer;
use tower_prism::balance::BalanceConfig;
use tower_prism::breaker::BreakerConfig;
use tower_prism::deadline::DeadlineConfig;
use tower_prism::fault::FaultConfig;
use tower_prism::limit::concurrency::ConcurrencyConfig;
use tower_prism::limit::rate::RateLimitConfig;
use tower_prism::retry::RetryConfig;
use tower_prism::ReliabilityLayer;
use tower_prism_testkit::{allocations_per_call, CountingAlloc, Echo};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn the_stack_allocates_nothing_per_call() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let layer = ReliabilityLayer::builder()
        .name("alloc")
        .rate_limit(RateLimitConfig::new(1_000_000_000, Duration::from_secs(1)))
        .concurrency_limit(ConcurrencyConfig::default())
        .circuit_breaker(BreakerConfig::default())
        .deadline(
            DeadlineConfig::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .retry(RetryConfig::default())
        .balance(BalanceConfig::default())
        .fault(
            FaultConfig::builder()
                .enabled(false)
                .error(0.5)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut balanced = layer
        .layer_endpoints::<usize, Echo, u64>((0..4).map(|i| (i, Echo)))
        .unwrap();
    let mut plain = layer.layer(Echo);

    let allocated = allocations_per_call(&mut balanced, |i: u64| i, 1_000, 10_000);
    assert_eq!(
        allocated, 0,
        "balanced: {allocated} allocations in 10,000 calls"
    );
    let allocated = allocations_per_call(&mut plain, |i: u64| i, 1_000, 10_000);
    assert_eq!(
        allocated, 0,
        "plain: {allocated} allocations in 10,000 calls"
    );
}

#[test]
fn a_stack_of_stages_left_out_allocates_nothing_per_call() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let layer = ReliabilityLayer::builder().name("empty").build().unwrap();
    let mut plain = layer.layer(Echo);
    let allocated = allocations_per_call(&mut plain, |i: u64| i, 1_000, 10_000);
    assert_eq!(allocated, 0, "{allocated} allocations in 10,000 calls");
}
