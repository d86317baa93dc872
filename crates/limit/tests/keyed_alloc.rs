//! The keyed admit path at the key cap allocates nothing: a fresh key either takes a full
//! key's slot (the map churns at a constant size) or draws from the overflow bucket.

use std::time::Duration;

use tower_layer::Layer;
use tower_prism_limit::rate::{RateLimitConfig, RateLimitLayer};
use tower_prism_testkit::{allocations_per_call, CountingAlloc, Echo};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const CAP: u64 = 1_000;

#[test]
fn fresh_keys_taking_full_keys_slots_allocate_nothing() {
    // 10^9/s: every bucket is full again by the next call, so each fresh key evicts one.
    let layer = RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(1_000_000_000)
            .period(Duration::from_secs(1))
            .burst(1_000)
            .max_keys(CAP as usize)
            .build()
            .unwrap(),
    )
    .unwrap()
    .key_fn(|req: &u64| *req);
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(Echo);
    // Warm-up: fill the map to its cap, then churn it long enough to reach its largest size.
    let allocations = allocations_per_call(&mut svc, |i| i, 20 * CAP, 10_000);
    assert_eq!(allocations, 0, "fresh keys at the cap");
    assert_eq!(limiter.snapshot().keys, CAP as usize);
}

#[test]
fn fresh_keys_beyond_a_cap_of_limited_keys_allocate_nothing() {
    // One token per 100 s with a large burst: tracked keys stay limited, the overflow
    // bucket admits every fresh key.
    let layer = RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(1)
            .period(Duration::from_secs(100))
            .burst(1_000_000)
            .max_keys(CAP as usize)
            .build()
            .unwrap(),
    )
    .unwrap()
    .key_fn(|req: &u64| *req);
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(Echo);
    let allocations = allocations_per_call(&mut svc, |i| i, CAP, 10_000);
    assert_eq!(allocations, 0, "fresh keys beyond the cap");
    assert_eq!(limiter.snapshot().keys, CAP as usize);
}
