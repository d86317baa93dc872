//! An endpoint's calls in flight and its metrics write gate, in one atomic word.
//!
//! Writers pass the gate concurrently until it is closed; closing it waits for the writers
//! already inside, so nothing written through the gate lands after `close` returns. The
//! balancer puts an endpoint's metric writes behind one, so that once the endpoint has left,
//! a late write from one of its calls cannot land on the series of the next endpoint in its
//! metrics slot. The gate shares its word with the endpoint's in-flight count, so a call's
//! start (count up, enter) and end (count down, enter) each take one atomic operation, plus
//! one to leave the gate.

use tower_prism_core::sync::{AtomicU64, Ordering};

/// The low 32 bits count the calls in flight.
const COUNT: u64 = 0xffff_ffff;
/// One writer inside the gate (bits 32 to 62 count them).
const WRITER: u64 = 1 << 32;
/// Set once the gate is closed.
const CLOSED: u64 = 1 << 63;
/// The writers inside.
const WRITERS: u64 = !COUNT & !CLOSED;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct CallGate {
    word: AtomicU64,
}

/// Leaves the gate, also when the write inside panics.
struct Inside<'a>(&'a AtomicU64);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(WRITER, Ordering::Release);
    }
}

impl CallGate {
    /// No call in flight, gate open.
    pub(crate) fn new() -> Self {
        CallGate {
            word: AtomicU64::new(0),
        }
    }

    /// Adds `delta` (one writer, plus or minus a call) and runs `write` unless closed.
    #[inline]
    fn enter(&self, delta: u64, write: impl FnOnce()) {
        let before = self.word.fetch_add(delta, Ordering::Acquire);
        let _inside = Inside(&self.word);
        if before & CLOSED == 0 {
            write();
        }
    }

    /// A call starts: counted in flight, and `write` runs unless the gate is closed.
    #[inline]
    pub(crate) fn start(&self, write: impl FnOnce()) {
        self.enter(WRITER + 1, write);
    }

    /// A call (counted by [`start`](Self::start)) ends: no longer in flight, and `write`
    /// runs unless the gate is closed.
    #[inline]
    pub(crate) fn end(&self, write: impl FnOnce()) {
        // one writer in, one call out: the count is at least 1, so this borrows nothing
        // from the writers' bits
        self.enter(WRITER - 1, write);
    }

    /// Runs `write` unless the gate is closed.
    #[inline]
    pub(crate) fn pass(&self, write: impl FnOnce()) {
        self.enter(WRITER, write);
    }

    /// Calls in flight.
    #[inline]
    pub(crate) fn in_flight(&self) -> u64 {
        self.word.load(Ordering::Relaxed) & COUNT
    }

    /// Closes the gate and waits until no writer is inside (calls may stay in flight).
    /// `true` for the one call that closed it.
    pub(crate) fn close(&self) -> bool {
        if self.word.fetch_or(CLOSED, Ordering::AcqRel) & CLOSED != 0 {
            return false;
        }
        while self.word.load(Ordering::Acquire) & WRITERS != 0 {
            // a writer is between its two atomic operations: a few nanoseconds
            #[cfg(loom)]
            loom::thread::yield_now();
            #[cfg(not(loom))]
            {
                std::hint::spin_loop();
                std::thread::yield_now();
            }
        }
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn counts_calls_and_passes_writes_until_closed() {
        let gate = CallGate::new();
        let writes = Cell::new(0);
        let write = || writes.set(writes.get() + 1);
        gate.start(write);
        gate.start(write);
        gate.end(write);
        assert_eq!((gate.in_flight(), writes.get()), (1, 3));
        assert!(gate.close());
        assert!(!gate.close(), "only the first close reports it");
        gate.start(write);
        gate.pass(write);
        assert_eq!(gate.in_flight(), 2, "calls are still counted after close");
        gate.end(write);
        gate.end(write);
        assert_eq!(
            (gate.in_flight(), writes.get()),
            (0, 3),
            "no write after close"
        );
    }

    #[test]
    fn a_panicking_write_leaves_the_gate() {
        let gate = CallGate::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gate.start(|| panic!("the recorder panics"));
        }));
        assert!(result.is_err());
        assert_eq!(gate.in_flight(), 1);
        assert!(
            gate.close(),
            "close does not wait for the panicked writer forever"
        );
    }
}

#[cfg(all(loom, test))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use loom::thread;

    /// A call starting and ending while the gate closes: whatever the interleaving, the
    /// value the closer sets after `close` is the last one (no write lands after it), and
    /// the call count is exact.
    #[test]
    fn loom_no_write_lands_after_close() {
        loom::model(|| {
            let gate = Arc::new(CallGate::new());
            let series = Arc::new(AtomicUsize::new(0));
            let caller = {
                let (gate, series) = (gate.clone(), series.clone());
                thread::spawn(move || {
                    gate.start(|| series.store(1, Ordering::Relaxed));
                    gate.end(|| series.store(2, Ordering::Relaxed));
                })
            };
            assert!(gate.close());
            series.store(0, Ordering::Relaxed);
            caller.join().unwrap();
            assert_eq!(series.load(Ordering::Relaxed), 0);
            assert_eq!(gate.in_flight(), 0);
        });
    }
}
