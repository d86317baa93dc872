//! The lock-free in-flight counter: limit and in-flight packed in one `AtomicU64`.
//!
//! The limit sits in the high 32 bits, the requests in flight in the low 32. Acquiring a
//! permit is one compare-and-swap that fails when in-flight has reached the limit; releasing
//! is one `fetch_sub`; changing the limit rewrites the high half and leaves in-flight alone.
//! A limit lowered below in-flight admits nothing until enough calls have finished.

use tower_prism_core::sync::{AtomicU64, Ordering};

const LOW: u64 = 0xFFFF_FFFF;

fn pack(limit: u32, in_flight: u32) -> u64 {
    (u64::from(limit) << 32) | u64::from(in_flight)
}

fn unpack(state: u64) -> (u32, u32) {
    ((state >> 32) as u32, (state & LOW) as u32)
}

/// A concurrency limit and the count of permits held under it.
///
/// Aligned to 128 bytes so that the word every call writes does not share a cache line
/// (or an adjacent-line prefetch pair) with read-mostly state beside it.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Permits {
    state: AtomicU64,
}

impl Permits {
    /// `limit` permits, none held.
    pub(crate) fn new(limit: u32) -> Self {
        Permits {
            state: AtomicU64::new(pack(limit, 0)),
        }
    }

    /// Takes a permit if fewer than `limit` are held. `Ok(in_flight)` counts this one;
    /// `Err(limit)` gives the limit that was reached.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<u32, u32> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (limit, in_flight) = unpack(state);
            if in_flight >= limit {
                return Err(limit);
            }
            // in_flight < limit <= u32::MAX, so +1 never carries into the limit bits.
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(in_flight + 1),
                Err(actual) => state = actual,
            }
        }
    }

    /// Returns a permit taken with [`try_acquire`](Self::try_acquire); gives the count left
    /// in flight. Sequentially consistent, so a following `SeqCst` load of a waiter count
    /// cannot miss a waiter that fenced before re-checking.
    #[inline]
    pub(crate) fn release(&self) -> u32 {
        // Only holders call this, so in-flight is at least 1 and nothing borrows from the
        // limit bits.
        let before = self.state.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(before & LOW > 0, "released a permit nobody held");
        unpack(before).1 - 1
    }

    /// Sets the limit; permits already held stay held. Returns the previous limit.
    pub(crate) fn set_limit(&self, limit: u32) -> u32 {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (old, in_flight) = unpack(state);
            match self.state.compare_exchange_weak(
                state,
                pack(limit, in_flight),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return old,
                Err(actual) => state = actual,
            }
        }
    }

    /// The limit now.
    pub(crate) fn limit(&self) -> u32 {
        unpack(self.state.load(Ordering::Relaxed)).0
    }

    /// Permits held now (the models check it; the limiter reads [`load`](Self::load)).
    #[cfg(loom)]
    pub(crate) fn in_flight(&self) -> u32 {
        unpack(self.state.load(Ordering::Relaxed)).1
    }

    /// `(limit, in_flight)` read together.
    pub(crate) fn load(&self) -> (u32, u32) {
        unpack(self.state.load(Ordering::Acquire))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn acquire_stops_at_the_limit_and_release_frees() {
        let p = Permits::new(2);
        assert_eq!(p.try_acquire(), Ok(1));
        assert_eq!(p.try_acquire(), Ok(2));
        assert_eq!(p.try_acquire(), Err(2));
        assert_eq!(p.release(), 1);
        assert_eq!(p.try_acquire(), Ok(2));
        assert_eq!(p.load(), (2, 2));
    }

    #[test]
    fn lowering_the_limit_keeps_holders_and_blocks_newcomers() {
        let p = Permits::new(3);
        for _ in 0..3 {
            p.try_acquire().unwrap();
        }
        assert_eq!(p.set_limit(1), 3);
        assert_eq!(p.load(), (1, 3));
        assert_eq!(p.try_acquire(), Err(1));
        p.release();
        p.release();
        assert_eq!(p.try_acquire(), Err(1));
        p.release();
        assert_eq!(p.try_acquire(), Ok(1));
    }

    #[test]
    fn extreme_values_do_not_mix_halves() {
        let p = Permits::new(u32::MAX);
        assert_eq!(p.try_acquire(), Ok(1));
        assert_eq!(p.limit(), u32::MAX);
        p.release();
        assert_eq!(p.load(), (u32::MAX, 0));
        let z = Permits::new(0);
        assert_eq!(z.try_acquire(), Err(0));
    }
}

#[cfg(all(loom, test))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Three threads race for two permits: never more than two are held, and every permit
    /// comes back.
    #[test]
    fn loom_acquire_never_exceeds_the_limit() {
        loom::model(|| {
            let permits = Arc::new(Permits::new(2));
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let p = permits.clone();
                    thread::spawn(move || {
                        if let Ok(n) = p.try_acquire() {
                            assert!(n <= 2, "{n} in flight under a limit of 2");
                            assert!(p.in_flight() <= 2);
                            p.release();
                            true
                        } else {
                            false
                        }
                    })
                })
                .collect();
            let admitted = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|a| *a)
                .count();
            assert!(admitted >= 2, "only {admitted} admitted");
            assert_eq!(permits.load(), (2, 0));
        });
    }

    /// A limit change racing with acquire/release keeps both halves intact.
    #[test]
    fn loom_set_limit_races_with_acquire() {
        loom::model(|| {
            let permits = Arc::new(Permits::new(1));
            let p = permits.clone();
            let t = thread::spawn(move || {
                if p.try_acquire().is_ok() {
                    p.release();
                }
            });
            permits.set_limit(3);
            let held = permits.try_acquire().is_ok();
            t.join().unwrap();
            assert!(held, "limit 3 with at most one other holder must admit");
            permits.release();
            assert_eq!(permits.load(), (3, 0));
        });
    }
}
