//! The per-call hot path allocates nothing once warmed up.

use tower_prism_balance::{Balance, BalanceConfig, Strategy};
use tower_prism_testkit::{allocations, allocations_per_call, call_now, CountingAlloc, Echo};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn no_allocation_per_call() {
    for strategy in [
        Strategy::P2cPeakEwma,
        Strategy::LeastRequests,
        Strategy::RoundRobin,
        Strategy::WeightedRoundRobin,
    ] {
        let mut b: Balance<usize, Echo, u64> = Balance::builder()
            .config(BalanceConfig::builder().strategy(strategy).build().unwrap())
            .endpoints((0..8).map(|i| (i, Echo)))
            .build()
            .unwrap();
        // warm-up: the first poll copies the endpoint set
        let allocated = allocations_per_call(&mut b, |i| i, 100, 10_000);
        assert_eq!(allocated, 0, "{strategy:?} allocated on the hot path");
    }
}

/// Stages above clone the balancer per call (retry keeps a clone to send a retry with): the
/// clone must be free, and still work when it is used.
#[test]
fn cloning_allocates_nothing_and_the_clone_works() {
    let mut b: Balance<usize, Echo, u64> = Balance::builder()
        .endpoints((0..8).map(|i| (i, Echo)))
        .build()
        .unwrap();
    allocations_per_call(&mut b, |i| i, 100, 0);
    let before = allocations();
    for _ in 0..1_000 {
        drop(std::hint::black_box(b.clone()));
    }
    assert_eq!(allocations() - before, 0);
    let mut clone = b.clone();
    assert_eq!(call_now(&mut clone, 7), 7);
    assert_eq!(call_now(&mut b, 8), 8);
}
