//! The per-call hot path allocates nothing once warmed up.

use tower_prism_balance::{Balance, Strategy};
use tower_prism_testkit::{allocations_per_call, CountingAlloc, Echo};

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
            .strategy(strategy)
            .endpoints((0..8).map(|i| (i, Echo)))
            .build()
            .unwrap();
        // warm-up: the first poll copies the endpoint set
        let allocated = allocations_per_call(&mut b, |i| i, 100, 10_000);
        assert_eq!(allocated, 0, "{strategy:?} allocated on the hot path");
    }
}
