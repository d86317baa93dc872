//! Lets a retry stage tell a concurrency limit above it when the attempt that will answer
//! the request began, without the request or response types carrying anything.
//!
//! A limit above a retry holds one permit for the whole request, backoff sleeps and failed
//! attempts included. Timed from admission, a retried request looks like one that queued:
//! in a brownout, a quarter of the calls retried after a backoff would read as a queue, and
//! a latency-aware limit would shed calls the upstream had room for. The limit polls its
//! inner future inside [`watch`]; the retry calls [`restarted`] when it sends a retry, and
//! the limit times the request from there: the latency of the attempt that answers, which
//! is what queueing at the upstream lengthens.
//!
//! Outside a `watch`, `restarted` sets a value nobody reads (the next `watch` starts
//! afresh). Both ends cost a thread-local access.

use std::cell::Cell;

use tokio::time::Instant;

thread_local! {
    /// Inside `watch`: when the latest attempt started by a retry below began.
    static RESTARTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` (a poll of the stages below) and returns its result with the start of the
/// latest retry attempt sent inside it, if any. An enclosing `watch` (a second limit
/// further up) sees it too.
#[inline]
pub fn watch<R>(f: impl FnOnce() -> R) -> (R, Option<Instant>) {
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = RESTARTED.try_with(|c| {
                let inner = c.get();
                c.set(inner.or(self.0));
            });
        }
    }
    let outer = RESTARTED.try_with(|c| c.replace(None)).ok().flatten();
    let restore = Restore(outer);
    let out = f();
    let restarted = RESTARTED.try_with(Cell::get).ok().flatten();
    drop(restore);
    (out, restarted)
}

/// Reports that a retry attempt starts now.
#[inline]
pub fn restarted() {
    let now = Instant::now();
    let _ = RESTARTED.try_with(|c| c.set(Some(now)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_reported_without_a_retry() {
        let ((), at) = watch(|| ());
        assert_eq!(at, None);
    }

    #[test]
    fn a_retry_inside_is_reported_and_does_not_leak_out() {
        let before = Instant::now();
        let ((), at) = watch(restarted);
        assert!(at.is_some_and(|at| at >= before));
        let ((), again) = watch(|| ());
        assert_eq!(again, None, "a later poll without a retry reports none");
    }

    #[test]
    fn an_enclosing_watch_sees_a_retry_of_an_inner_one() {
        let ((), outer) = watch(|| {
            let ((), inner) = watch(restarted);
            assert!(inner.is_some());
        });
        assert!(outer.is_some());
    }

    #[test]
    fn a_retry_outside_a_watch_is_not_read_by_the_next_one() {
        restarted();
        let ((), at) = watch(|| ());
        assert_eq!(at, None);
    }
}
