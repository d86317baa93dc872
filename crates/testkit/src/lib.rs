//! Test helpers shared by the tower-prism crates: a counting global allocator for the
//! "no allocation on the hot path" tests, an always-ready echo service, a service whose
//! readiness a test controls ([`Gate`]), an in-memory `metrics` recorder
//! ([`metrics::Capture`]), and a seeded generator ([`Rng`]).
//!
//! ```
//! use tower_prism_testkit::{allocations_per_call, Echo};
//!
//! // Without `#[global_allocator] static A: CountingAlloc = CountingAlloc;` in the test
//! // binary nothing is counted, so this reads 0 whatever the service does.
//! let mut svc = Echo;
//! assert_eq!(allocations_per_call(&mut svc, |i| i, 10, 100), 0);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower_service::Service;

mod gate;
pub mod metrics;
mod rng;

pub use gate::{Gate, UpstreamError};
pub use rng::Rng;

thread_local! {
    // Per thread, so that libtest's own threads (and other tests running beside) do not
    // count. A const-initialised `Cell` has no destructor and needs no allocation.
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

/// A global allocator that counts allocations and reallocations per thread, then defers
/// to [`System`]. Install it in a test binary with
/// `#[global_allocator] static A: CountingAlloc = CountingAlloc;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counter is a thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's layout obligations are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, via this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for `dealloc`; `new_size` obligations are the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made so far by the calling thread (0 unless [`CountingAlloc`] is
/// installed). Work done on other threads (a multi-thread runtime's workers) is not seen:
/// drive the hot path under test on this thread.
pub fn allocations() -> u64 {
    ALLOCATIONS.try_with(|n| n.get()).unwrap_or(0)
}

/// A service that is always ready and answers every request with itself, at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl<R> Service<R> for Echo {
    type Response = R;
    type Error = Infallible;
    type Future = Ready<Result<R, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        ready(Ok(req))
    }
}

/// One call through `svc` that must complete at once: `poll_ready` must be ready, and the
/// response future must finish successfully on its first poll (with a no-op waker).
///
/// # Panics
/// When the service is not ready, the future is pending, or the call fails: the hot path
/// under test was not the one taken.
pub fn call_now<S: Service<R>, R>(svc: &mut S, req: R) -> S::Response {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))),
        "service not ready at once"
    );
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        Poll::Ready(Err(_)) => panic!("call failed"),
        Poll::Pending => panic!("call did not complete at once"),
    }
}

/// Allocations per `calls` calls of `svc` (made with [`call_now`] on `make(i)`), after
/// `warm_up` calls that may allocate (lazy statics, metric handles, per-key state).
pub fn allocations_per_call<S, R>(
    svc: &mut S,
    mut make: impl FnMut(u64) -> R,
    warm_up: u64,
    calls: u64,
) -> u64
where
    S: Service<R>,
{
    for i in 0..warm_up {
        call_now(svc, make(i));
    }
    let before = allocations();
    for i in 0..calls {
        call_now(svc, make(i));
    }
    allocations() - before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_answers_with_the_request() {
        assert_eq!(call_now(&mut Echo, 7u32), 7);
    }

    #[test]
    #[should_panic(expected = "did not complete at once")]
    fn a_pending_call_is_reported() {
        struct Never;
        impl Service<()> for Never {
            type Response = ();
            type Error = Infallible;
            type Future = std::future::Pending<Result<(), Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: ()) -> Self::Future {
                std::future::pending()
            }
        }
        call_now(&mut Never, ());
    }
}
