//! The per-call hot path allocates nothing once warmed up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use tower::Service;
use tower_prism_balance::{Balance, Strategy};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // only allocations made by the measuring thread count (libtest's own threads allocate too)
    static MEASURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if MEASURING.with(|m| m.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Noop;

impl Service<u64> for Noop {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

fn calls(b: &mut Balance<usize, Noop, u64>, n: u64) {
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..n {
        assert!(b.poll_ready(&mut cx).is_ready());
        let fut = pin!(b.call(i));
        assert!(matches!(fut.poll(&mut cx), Poll::Ready(Ok(r)) if r == i));
    }
}

#[test]
fn no_allocation_per_call() {
    for strategy in [
        Strategy::P2cPeakEwma,
        Strategy::LeastRequests,
        Strategy::RoundRobin,
        Strategy::WeightedRoundRobin,
    ] {
        let mut b = Balance::builder()
            .strategy(strategy)
            .endpoints((0..8).map(|i| (i, Noop)))
            .build()
            .unwrap();
        calls(&mut b, 100); // warm up: first poll copies the endpoint set
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        MEASURING.with(|m| m.set(true));
        calls(&mut b, 10_000);
        MEASURING.with(|m| m.set(false));
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        assert_eq!(after - before, 0, "{strategy:?} allocated on the hot path");
    }
}
