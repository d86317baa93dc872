//! The success path allocates nothing for `Clone` requests: a counting global allocator
//! around 1000 calls that succeed at once (budget on, with and without an attempt timeout).
//! Neither does a pass-through stage.

use std::time::Duration;

use tower_layer::Layer;
use tower_prism_retry::{HedgeConfig, Retry, RetryConfig, RetryLayer};
use tower_prism_testkit::{allocations_per_call, CountingAlloc, Echo};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn success_path_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let layer = RetryLayer::builder(RetryConfig::default())
        .name("alloc")
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    assert_eq!(
        allocations_per_call(&mut svc, |i: u64| i, 100, 1000),
        0,
        "default config"
    );

    let layer = RetryLayer::builder(
        RetryConfig::builder()
            .attempt_timeout(Duration::from_secs(1))
            .max_elapsed(Duration::from_secs(5))
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let mut svc = layer.layer(Echo);
    assert_eq!(
        allocations_per_call(&mut svc, |i: u64| i, 100, 1000),
        0,
        "with an attempt timeout"
    );
}

#[test]
fn hedging_configured_allocates_nothing_when_no_hedge_fires() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    for hedge in [
        HedgeConfig::fixed(Duration::from_millis(50)),
        HedgeConfig::percentile(0.95),
    ] {
        let layer =
            RetryLayer::from_config(&RetryConfig::builder().hedge(hedge.clone()).build().unwrap())
                .unwrap();
        let mut svc = layer.layer(Echo);
        assert_eq!(
            allocations_per_call(&mut svc, |i: u64| i, 100, 1000),
            0,
            "{hedge:?}"
        );
        // under a deadline stage too
        let deadline = tower_prism_core::RequestDeadline::after(Duration::from_secs(1));
        let n = deadline.scope(|| allocations_per_call(&mut svc, |i: u64| i, 100, 1000));
        assert_eq!(n, 0, "{hedge:?} with a deadline");
    }
}

#[test]
fn pass_through_allocates_nothing() {
    let mut svc: Retry<Echo> = Retry::pass_through(Echo);
    assert_eq!(allocations_per_call(&mut svc, |i: u64| i, 10, 1000), 0);
}
