//! No allocation per call: with a timeout that never fires, with no deadline (idle), and
//! for the propagate stage, over a service that answers at once.

use std::time::Duration;

use tower::Layer;
use tower_prism_core::RequestDeadline;
use tower_prism_deadline::{DeadlineConfig, DeadlineLayer};
use tower_prism_testkit::{allocations_per_call, CountingAlloc, Echo};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_allocates_nothing() {
    let timed = DeadlineConfig::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let layer = DeadlineLayer::from_config(&timed).unwrap();
    let mut svc = layer.layer(Echo);
    assert_eq!(allocations_per_call(&mut svc, |i| i, 10, 1000), 0, "timed");

    // below a deadline stage's scope, as a retry's attempts are sent
    let mut below = layer.propagate_layer().layer(Echo);
    let deadline = RequestDeadline::after(Duration::from_secs(1));
    let allocations = deadline.scope(|| allocations_per_call(&mut below, |i| i, 10, 1000));
    assert_eq!(allocations, 0, "propagate");

    let idle = DeadlineLayer::from_config(&DeadlineConfig::default()).unwrap();
    let mut svc = idle.layer(Echo);
    assert_eq!(allocations_per_call(&mut svc, |i| i, 10, 1000), 0, "idle");
}
