//! The counting allocator sees allocations, so a 0 from it means something.

use std::future::ready;
use std::task::{Context, Poll};

use tower_prism_testkit::{allocations, allocations_per_call, CountingAlloc, Echo};
use tower_service::Service;

#[global_allocator]
static A: CountingAlloc = CountingAlloc;

/// Allocates a `Box` per call.
struct Boxing;

impl Service<u64> for Boxing {
    type Response = Box<u64>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Box<u64>, Self::Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(Box::new(req)))
    }
}

#[test]
fn counts_allocations_and_none_for_echo() {
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(allocations() > before);
    drop(v);
    assert_eq!(allocations_per_call(&mut Boxing, |i| i, 5, 50), 50);
    assert_eq!(allocations_per_call(&mut Echo, |i| i, 5, 50), 0);
}
