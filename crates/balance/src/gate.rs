//! An endpoint's calls in flight and its metrics write gate, in one atomic word.
//!
//! Writers pass the gate concurrently until it is closed; closing it waits for the writers
//! already inside, so nothing written through the gate lands after `close` returns. The
//! balancer puts an endpoint's metric writes behind one, so that once the endpoint has left,
//! a late write from one of its calls cannot land on the series of the next endpoint in its
//! metrics slot. The gate shares its word with the endpoint's in-flight count, so a call's
//! start (count up, enter) and end (count down, enter) each take one atomic operation, plus
//! one to leave the gate.
//!
//! When the endpoint's metric handles are the `metrics` crate's no-ops (no recorder was
//! installed when they were registered), nothing written through the gate lands anywhere,
//! so there is nothing to wait for: such a gate only counts (see [`CallGate::new`]), and a
//! call's start and end take one atomic operation each.

use tower_prism_core::sync::{AtomicU64, Ordering};

/// The low 32 bits count the calls in flight.
const COUNT: u64 = 0xffff_ffff;
/// One writer inside the gate (bits 32 to 62 count them; a guarded gate only).
const WRITER: u64 = 1 << 32;
/// Set once the gate is closed.
const CLOSED: u64 = 1 << 63;
/// The writers inside.
const WRITERS: u64 = !COUNT & !CLOSED;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct CallGate {
    word: AtomicU64,
    /// The writes it lets through land on a metric series: they take a writer's place in
    /// the gate. `false`: they land nowhere, and are not even run.
    guarded: bool,
}

/// Leaves the gate, also when the write inside panics.
struct Inside<'a>(&'a AtomicU64);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(WRITER, Ordering::Release);
    }
}

impl CallGate {
    /// No call in flight, gate open. `guarded`: the writes passed to it land on metric
    /// series, and none may land after [`close`](Self::close). Pass `false` only when they
    /// are known to do nothing (metric handles of the `metrics` crate's no-op recorder):
    /// the gate then only counts calls, and skips the writes.
    pub(crate) fn new(guarded: bool) -> Self {
        CallGate {
            word: AtomicU64::new(0),
            guarded,
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
        if self.guarded {
            self.enter(WRITER + 1, write);
        } else {
            // Relaxed: the count orders nothing (its readers load it relaxed)
            self.word.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A call (counted by [`start`](Self::start)) ends: no longer in flight, and `write`
    /// runs unless the gate is closed.
    #[inline]
    pub(crate) fn end(&self, write: impl FnOnce()) {
        if self.guarded {
            // one writer in, one call out: the count is at least 1, so this borrows nothing
            // from the writers' bits
            self.enter(WRITER - 1, write);
        } else {
            self.word.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Runs `write` unless the gate is closed.
    #[inline]
    pub(crate) fn pass(&self, write: impl FnOnce()) {
        if self.guarded {
            self.enter(WRITER, write);
        }
    }

    /// Calls in flight.
    #[inline]
    pub(crate) fn in_flight(&self) -> u64 {
        self.word.load(Ordering::Relaxed) & COUNT
    }

    /// Closes the gate and waits until no writer is inside (calls may stay in flight; an
    /// unguarded gate never has a writer inside). `true` for the one call that closed it.
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
        let gate = CallGate::new(true);
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

    /// With no-op metric handles the gate counts the same calls, runs no write (there is
    /// nothing for one to do) and closes once.
    #[test]
    fn an_unguarded_gate_only_counts() {
        let gate = CallGate::new(false);
        let writes = Cell::new(0);
        let write = || writes.set(writes.get() + 1);
        gate.start(write);
        gate.start(write);
        gate.end(write);
        gate.pass(write);
        assert_eq!((gate.in_flight(), writes.get()), (1, 0));
        assert!(gate.close());
        assert!(!gate.close(), "only the first close reports it");
        gate.start(write);
        assert_eq!(gate.in_flight(), 2, "calls are still counted after close");
        gate.end(write);
        gate.end(write);
        assert_eq!((gate.in_flight(), writes.get()), (0, 0));
    }

    #[test]
    fn a_panicking_write_leaves_the_gate() {
        let gate = CallGate::new(true);
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
            let gate = Arc::new(CallGate::new(true));
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

    /// An unguarded gate (no-op metric handles): a call starting and ending on one thread
    /// while two others close the gate. Whatever the interleaving, the count is exact,
    /// exactly one close reports closing it, and neither waits for ever.
    #[test]
    fn loom_an_unguarded_gate_counts_exactly_and_closes_once() {
        loom::model(|| {
            let gate = Arc::new(CallGate::new(false));
            let closers: Vec<_> = (0..2)
                .map(|_| {
                    let gate = gate.clone();
                    thread::spawn(move || gate.close())
                })
                .collect();
            let caller = {
                let gate = gate.clone();
                thread::spawn(move || {
                    gate.start(|| unreachable!("an unguarded gate runs no write"));
                    gate.end(|| unreachable!("an unguarded gate runs no write"));
                })
            };
            gate.start(|| unreachable!("an unguarded gate runs no write"));
            caller.join().unwrap();
            let closed = closers
                .into_iter()
                .map(|c| c.join().unwrap())
                .filter(|&c| c)
                .count();
            assert_eq!(closed, 1);
            assert_eq!(gate.in_flight(), 1);
            gate.end(|| unreachable!("an unguarded gate runs no write"));
            assert_eq!(gate.in_flight(), 0);
        });
    }
}
