//! Lets a hedging retry stage ask the balancer below it for an endpoint other than the
//! ones its earlier attempts went to, without the request type carrying anything.
//!
//! The retry stage calls [`call_avoiding`] around its synchronous `inner.call(..)`; the
//! balancer reads [`avoided`] while it picks and reports its pick with [`record_pick`].
//! Endpoints are named by their index modulo 64 (one bit each in a `u64`). Outside a
//! `call_avoiding` both ends cost one thread-local read and do nothing.

use std::cell::Cell;

thread_local! {
    /// `Some(mask)` inside `call_avoiding`: endpoints (index % 64) to avoid.
    static AVOID: Cell<Option<u64>> = const { Cell::new(None) };
    /// The bit of the endpoint picked inside the innermost `call_avoiding`.
    static PICKED: Cell<u64> = const { Cell::new(0) };
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
    prev_avoid: Option<u64>,
    prev_picked: u64,
}

impl Avoiding {
    /// Asks a balancer called from now on to avoid the endpoints in `avoid`.
    #[inline]
    pub fn start(avoid: u64) -> Self {
        Avoiding {
            prev_avoid: AVOID.try_with(|c| c.replace(Some(avoid))).ok().flatten(),
            prev_picked: PICKED.try_with(|c| c.replace(0)).unwrap_or(0),
        }
    }

    /// Ends the request: the bit of the endpoint the balancer picked (0 when none did).
    #[inline]
    pub fn picked(self) -> u64 {
        PICKED.try_with(Cell::get).unwrap_or(0)
    }
}

impl Drop for Avoiding {
    #[inline]
    fn drop(&mut self) {
        let _ = AVOID.try_with(|c| c.set(self.prev_avoid));
        let _ = PICKED.try_with(|c| c.set(self.prev_picked));
    }
}

/// Inside [`call_avoiding`]: the endpoints to avoid. `None` outside one.
#[inline]
pub fn avoided() -> Option<u64> {
    AVOID.try_with(Cell::get).ok().flatten()
}

/// Reports that the balancer picked endpoint `index` (a no-op outside [`call_avoiding`]).
#[inline]
pub fn record_pick(index: usize) {
    if avoided().is_some() {
        let _ = PICKED.try_with(|c| c.set(endpoint_bit(index)));
    }
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
