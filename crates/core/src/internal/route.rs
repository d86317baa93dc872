//! Lets a retry stage (hedging, or told to avoid tried endpoints) ask the balancer below
//! it for an endpoint other than the ones its earlier attempts went to, without the
//! request type carrying anything.
//!
//! The retry stage calls [`call_avoiding`] (or holds an [`Avoiding`]) around its
//! synchronous `inner.call(..)`; the
//! balancer reads [`avoided`] while it picks and reports its pick with [`record_pick`].
//! Endpoints are named by their index modulo 64 (one bit each in a `u64`). Outside a
//! `call_avoiding` both ends cost one thread-local read and do nothing.

use std::cell::Cell;

/// What a `call_avoiding` scope tells the balancer below and hears back, in one
/// thread-local (each access of one costs a lookup of its address).
#[derive(Debug, Clone, Copy)]
struct Route {
    /// `Some(mask)` inside `call_avoiding`: endpoints (index % 64) to avoid.
    avoid: Option<u64>,
    /// The bit of the endpoint picked inside the innermost `call_avoiding`.
    picked: u64,
}

const OUTSIDE: Route = Route {
    avoid: None,
    picked: 0,
};

thread_local! {
    static ROUTE: Cell<Route> = const { Cell::new(OUTSIDE) };
}

/// Calls `f` asking a balancer called inside it to avoid the endpoints in `avoid` (bit
/// `i % 64` for endpoint `i`) when it has another healthy one. Returns `f`'s result and
/// the bit of the endpoint the balancer picked (0 when no balancer reported one).
pub fn call_avoiding<R>(avoid: u64, f: impl FnOnce() -> R) -> (R, u64) {
    let avoiding = Avoiding::start(avoid);
    let out = f();
    (out, avoiding.picked())
}

/// [`call_avoiding`] as a guard: the mask holds from [`start`](Self::start) to
/// [`picked`](Self::picked) (or the guard's drop, when the call panics). For a call on a
/// hot path: its future is built in place, where a closure's result is copied out.
#[must_use = "the mask holds until `picked` or the drop"]
pub struct Avoiding {
    outer: Route,
}

impl Avoiding {
    /// Asks a balancer called from now on to avoid the endpoints in `avoid`.
    #[inline]
    pub fn start(avoid: u64) -> Self {
        let inner = Route {
            avoid: Some(avoid),
            picked: 0,
        };
        Avoiding {
            outer: ROUTE.try_with(|c| c.replace(inner)).unwrap_or(OUTSIDE),
        }
    }

    /// Ends the request: the bit of the endpoint the balancer picked (0 when none did).
    #[inline]
    pub fn picked(self) -> u64 {
        let outer = self.outer;
        std::mem::forget(self);
        ROUTE.try_with(|c| c.replace(outer).picked).unwrap_or(0)
    }
}

impl Drop for Avoiding {
    #[inline]
    fn drop(&mut self) {
        let _ = ROUTE.try_with(|c| c.set(self.outer));
    }
}

/// Inside [`call_avoiding`]: the endpoints to avoid. `None` outside one.
#[inline]
pub fn avoided() -> Option<u64> {
    ROUTE.try_with(|c| c.get().avoid).ok().flatten()
}

/// Reports that the balancer picked endpoint `index` (a no-op outside [`call_avoiding`]).
#[inline]
pub fn record_pick(index: usize) {
    let _ = ROUTE.try_with(|c| {
        let mut route = c.get();
        if route.avoid.is_some() {
            route.picked = endpoint_bit(index);
            c.set(route);
        }
    });
}

/// The bit that names endpoint `index` in an avoid mask.
#[inline]
pub fn endpoint_bit(index: usize) -> u64 {
    1u64 << (index % 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_call_nothing_is_avoided_or_recorded() {
        assert_eq!(avoided(), None);
        record_pick(3);
        let ((), picked) = call_avoiding(0, || ());
        assert_eq!(picked, 0);
    }

    #[test]
    fn the_balancer_sees_the_mask_and_reports_its_pick() {
        let ((), picked) = call_avoiding(0b101, || {
            assert_eq!(avoided(), Some(0b101));
            record_pick(1);
        });
        assert_eq!(picked, 0b10);
        assert_eq!(avoided(), None);
    }

    #[test]
    fn nested_calls_restore_the_outer_state() {
        let ((), outer) = call_avoiding(1, || {
            record_pick(2);
            let ((), inner) = call_avoiding(4, || record_pick(5));
            assert_eq!(inner, endpoint_bit(5));
            assert_eq!(avoided(), Some(1));
        });
        assert_eq!(outer, endpoint_bit(2));
    }
}
