//! The success path allocates nothing for `Clone` requests: a counting global allocator
//! around 1000 calls that succeed at once (budget on, with and without an attempt timeout).

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower_layer::Layer;
use tower_prism_retry::RetryLayer;
use tower_service::Service;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

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
struct Echo;

impl Service<u64> for Echo {
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

fn allocations_per_call<S: Service<u64>>(svc: &mut S) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut run = |svc: &mut S, i: u64| {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let fut = pin!(svc.call(i));
        match fut.poll(&mut cx) {
            Poll::Ready(Ok(_)) => {}
            _ => panic!("call {i} did not succeed at once"),
        }
    };
    for i in 0..100 {
        run(svc, i); // warm-up
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..1000 {
        run(svc, i);
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn success_path_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let layer = RetryLayer::builder().name("alloc").build().unwrap();
    let mut svc = layer.layer(Echo);
    assert_eq!(allocations_per_call(&mut svc), 0, "default config");

    let layer = RetryLayer::builder()
        .attempt_timeout(Duration::from_secs(1))
        .max_elapsed(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    assert_eq!(allocations_per_call(&mut svc), 0, "with an attempt timeout");
}
