//! One reading of the CPU's counter for every stage of a stack, per call and per poll.
//!
//! A stack of stages reads the time several times per request: the rate limiter to admit
//! it, the breaker to time it, the retry budget and the balancer when it completes. On
//! the counter each reading costs tens of cycles, and within one synchronous `call` (or
//! one `poll`) they all mean the same moment. The facade runs its `call` and `poll_ready`
//! inside [`shared`], and its response future's `poll` inside a scope it [`enter`]s: the
//! first [`TimeSource`] on the counter to read the time inside it reads the counter, the
//! others reuse that reading.
//!
//! Readings are taken lazily, so a stage that reads after the inner service answered
//! (timing a call) reads after the inner service's own work. A scope inside a scope (a
//! stack called by a stack) shares the outer one's reading. Sources on tokio's clock are
//! untouched: paused-time tests see every reading as it was.
//!
//! [`TimeSource`]: crate::TimeSource

use std::cell::Cell;

/// Outside any scope: every reading reads the counter.
const OUTSIDE: u64 = u64::MAX;
/// Inside a scope, before its first reading.
const UNREAD: u64 = u64::MAX - 1;

thread_local! {
    static READING: Cell<u64> = const { Cell::new(OUTSIDE) };
}

/// Runs `f` with one counter reading shared by every [`TimeSource`](crate::TimeSource) on
/// the counter that reads the time inside it.
#[inline]
pub fn shared<R>(f: impl FnOnce() -> R) -> R {
    shared_with((), |()| f())
}

/// [`shared`] for a call that takes `value` (a request): `f(value)` runs in the scope.
/// The value goes to `f` as its argument, not captured by it: a closure that captures a
/// request copies it into the closure and again out of it (callgrind: two copies of an
/// HTTP request per call on the HTTP server stack).
#[inline]
pub fn shared_with<T, R>(value: T, f: impl FnOnce(T) -> R) -> R {
    // The facade's `call` on a server's stack, whose future is small, enters through
    // `enter`'s guard instead: timed, that is faster there (see `Reliability`'s `call`).
    if !open() {
        return f(value);
    }
    let _leave = Scope { entered: true };
    f(value)
}

/// A scope entered by [`enter`]: left when dropped, even by a panic's unwinding (a reading
/// kept past its scope would stop the thread's clock for every later reading).
#[derive(Debug)]
pub struct Scope {
    entered: bool,
}

impl Drop for Scope {
    #[inline]
    fn drop(&mut self) {
        if self.entered {
            let _ = READING.try_with(|r| r.set(OUTSIDE));
        }
    }
}

/// Enters a scope, as [`shared`] does, until the returned guard drops. For a caller whose
/// result is large: returned through [`shared`]'s closure, it is copied once more.
#[inline]
pub fn enter() -> Scope {
    Scope { entered: open() }
}

/// Opens a scope unless one is open: whether this call opened it (and must leave it).
#[inline]
fn open() -> bool {
    READING
        .try_with(|r| {
            let outermost = r.get() == OUTSIDE;
            if outermost {
                r.set(UNREAD);
            }
            outermost
        })
        .unwrap_or(false)
}

/// The counter now: the scope's reading if one was taken, else `read()` (kept for the
/// scope's later readings).
#[inline]
pub(crate) fn counter(read: impl Fn() -> u64) -> u64 {
    READING
        .try_with(|r| match r.get() {
            OUTSIDE => read(),
            UNREAD => {
                let now = read();
                // A counter reading equal to a marker would only cost the sharing.
                if now < UNREAD {
                    r.set(now);
                }
                now
            }
            now => now,
        })
        .unwrap_or_else(|_| read())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn a_scope_reads_once_and_outside_every_reading_reads() {
        let reads = Cell::new(0u64);
        let read = || {
            reads.set(reads.get() + 1);
            100 + reads.get()
        };
        assert_eq!(counter(read), 101);
        assert_eq!(counter(read), 102);
        let inside = shared(|| (counter(read), counter(read), shared(|| counter(read))));
        assert_eq!(
            inside,
            (103, 103, 103),
            "one reading, nested scope included"
        );
        assert_eq!(counter(read), 104, "the scope is left");
        assert_eq!(shared(|| counter(read)), 105, "a new scope reads anew");
        let with = shared_with(7, |n| (n, counter(read), counter(read)));
        assert_eq!(with, (7, 106, 106), "shared_with shares one reading too");
        assert_eq!(counter(read), 107, "and leaves its scope");
    }

    #[test]
    fn a_panic_inside_a_scope_leaves_it() {
        let _ = std::panic::catch_unwind(|| shared(|| panic!("inside")));
        let n = Cell::new(0u64);
        let read = || {
            n.set(n.get() + 1);
            n.get()
        };
        assert_eq!((counter(read), counter(read)), (1, 2));
    }

    #[test]
    fn an_entered_scope_reads_once_until_its_guard_drops_even_in_a_panic() {
        let n = Cell::new(0u64);
        let read = || {
            n.set(n.get() + 1);
            n.get()
        };
        {
            let _scope = enter();
            assert_eq!((counter(read), counter(read)), (1, 1));
            let _inner = enter();
            assert_eq!(counter(read), 1, "a nested scope shares the reading");
        }
        assert_eq!(counter(read), 2, "the scope is left");
        let _ = std::panic::catch_unwind(|| {
            let _scope = enter();
            counter(|| 0);
            panic!("inside");
        });
        assert_eq!(
            (counter(read), counter(read)),
            (3, 4),
            "left by the unwinding"
        );
    }

    #[test]
    fn a_scope_without_a_reading_reads_nothing() {
        assert_eq!(shared(|| 7), 7);
        assert_eq!(counter(|| 9), 9);
    }
}
