//! No allocation per call: with a timeout that never fires, with no deadline (idle), and
//! for the propagate stage, and for both in pass-through mode, over a service that
//! answers at once.

use std::time::Duration;

use tower::Layer;
use tower_prism_core::RequestDeadline;
use tower_prism_deadline::{
    Deadline, DeadlineConfig, DeadlineLayer, HttpRequest, PropagateDeadline,
};
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

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pass_through_call_allocates_nothing() {
    let mut svc: Deadline<Echo, HttpRequest> = Deadline::pass_through(Echo);
    let allocations = allocations_per_call(&mut svc, |_| http::Request::new(()), 10, 1000);
    assert_eq!(allocations, 0, "deadline");
    let mut below: PropagateDeadline<Echo, HttpRequest> = PropagateDeadline::pass_through(Echo);
    let deadline = RequestDeadline::after(Duration::from_secs(1));
    let allocations =
        deadline.scope(|| allocations_per_call(&mut below, |_| http::Request::new(()), 10, 1000));
    assert_eq!(allocations, 0, "propagate");
}
