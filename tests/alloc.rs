//! The stack's hot path allocates nothing: poll_ready, call and the response future, after
//! warm-up, through rate limit -> balance over ready endpoints.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::{Layer, Service};
use tower_prism::balance::BalanceConfig;
use tower_prism::ratelimit::RateLimitConfig;
use tower_prism::ReliabilityLayer;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Ready0;

impl Service<u64> for Ready0 {
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

fn one_call<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, i: u64) {
    assert!(matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))));
    let fut = pin!(svc.call(i));
    assert!(matches!(fut.poll(cx), Poll::Ready(Ok(_))));
}

#[test]
fn the_stack_allocates_nothing_per_call() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let layer = ReliabilityLayer::builder()
        .name("alloc")
        .rate_limit(RateLimitConfig::new(1_000_000_000, Duration::from_secs(1)))
        .balance(BalanceConfig::default())
        .build()
        .unwrap();
    let mut balanced = layer
        .layer_endpoints::<usize, Ready0, u64>((0..4).map(|i| (i, Ready0)))
        .unwrap();
    let mut plain = layer.layer(Ready0);

    for i in 0..1_000 {
        one_call(&mut balanced, &mut cx, i);
        one_call(&mut plain, &mut cx, i);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..10_000 {
        one_call(&mut balanced, &mut cx, i);
        one_call(&mut plain, &mut cx, i);
    }
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocated, 0, "{allocated} allocations in 20,000 calls");
}
