//! A write gate: many writers pass it concurrently until it is closed; closing it waits for
//! the writers already inside, so nothing written through the gate lands after `close`
//! returns. The balancer puts an endpoint's metric writes behind one, so that once the
//! endpoint has left, a late write from one of its calls cannot land on the series of the
//! next endpoint in its metrics slot.

use tower_prism_core::sync::{AtomicU64, Ordering};

/// Set once the gate is closed; the low bits count the writers inside.
const CLOSED: u64 = 1 << 63;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct WriteGate {
    state: AtomicU64,
}

/// Leaves the gate, also when the write inside panics.
struct Inside<'a>(&'a AtomicU64);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl WriteGate {
    /// An open gate.
    pub(crate) fn new() -> Self {
        WriteGate {
            state: AtomicU64::new(0),
        }
    }

    /// Runs `write` unless the gate is closed. Two uncontended atomic operations.
    #[inline]
    pub(crate) fn pass(&self, write: impl FnOnce()) {
        let before = self.state.fetch_add(1, Ordering::Acquire);
        let _inside = Inside(&self.state);
        if before & CLOSED == 0 {
            write();
        }
    }

    /// Closes the gate and waits until no writer is inside. `true` for the one call that
    /// closed it.
    pub(crate) fn close(&self) -> bool {
        if self.state.fetch_or(CLOSED, Ordering::AcqRel) & CLOSED != 0 {
            return false;
        }
        while self.state.load(Ordering::Acquire) & !CLOSED != 0 {
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
    fn writes_pass_until_closed_and_close_once() {
        let gate = WriteGate::new();
        let writes = Cell::new(0);
        gate.pass(|| writes.set(writes.get() + 1));
        assert!(gate.close());
        assert!(!gate.close(), "only the first close reports it");
        gate.pass(|| writes.set(writes.get() + 1));
        assert_eq!(writes.get(), 1);
    }

    #[test]
    fn a_panicking_write_leaves_the_gate() {
        let gate = WriteGate::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gate.pass(|| panic!("the recorder panics"));
        }));
        assert!(result.is_err());
        assert!(
            gate.close(),
            "close does not wait for the panicked writer forever"
        );
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use loom::thread;

    /// A writer racing the close: whatever the interleaving, the value the closer sets after
    /// `close` is the last one (no write lands after it).
    #[test]
    fn loom_no_write_lands_after_close() {
        loom::model(|| {
            let gate = Arc::new(WriteGate::new());
            let series = Arc::new(AtomicUsize::new(0));
            let writer = {
                let (gate, series) = (gate.clone(), series.clone());
                thread::spawn(move || gate.pass(|| series.store(1, Ordering::Relaxed)))
            };
            assert!(gate.close());
            series.store(0, Ordering::Relaxed);
            writer.join().unwrap();
            assert_eq!(series.load(Ordering::Relaxed), 0);
        });
    }
}
