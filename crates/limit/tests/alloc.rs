//! The admit path allocates nothing: a counting global allocator around 1000 admitted calls.

use std::time::Duration;

use tower_layer::Layer;
use tower_prism_limit::rate::{
    Clock, RateLimit, RateLimitConfig, RateLimitConfigBuilder, RateLimitLayer,
};
use tower_prism_testkit::{allocations_per_call, CountingAlloc, Echo};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// A limiter that admits every call here (10^9/s, burst 10^6).
fn roomy() -> RateLimitConfigBuilder {
    RateLimitConfig::builder()
        .rate(1_000_000_000)
        .period(Duration::from_secs(1))
        .burst(1_000_000)
}

fn layer(config: RateLimitConfigBuilder) -> RateLimitLayer {
    RateLimitLayer::from_config(&config.build().unwrap()).unwrap()
}

#[test]
fn admitted_calls_allocate_nothing() {
    for clock in [Clock::Tokio, Clock::Tsc] {
        let mut unkeyed = layer(roomy().clock(clock)).layer(Echo);
        assert_eq!(
            allocations_per_call(&mut unkeyed, |i| i % 4, 100, 1000),
            0,
            "unkeyed path, {clock:?} clock"
        );
    }

    // Also with a queue configured (nobody waiting) and with keys of a fixed set.
    let queued =
        layer(roomy().queue_size(16).max_wait(Duration::from_millis(10))).key_fn(|req: &u64| *req);
    let mut keyed = queued.layer(Echo);
    assert_eq!(
        allocations_per_call(&mut keyed, |i| i % 4, 100, 1000),
        0,
        "keyed path, known keys"
    );
}

#[test]
fn pass_through_calls_allocate_nothing() {
    let mut open = RateLimit::pass_through(Echo);
    assert_eq!(
        allocations_per_call(&mut open, |i| i, 100, 1000),
        0,
        "pass-through"
    );
}
