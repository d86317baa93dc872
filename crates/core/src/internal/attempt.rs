//! Lets a retry stage tell a concurrency limit above it when a request sleeps in a backoff
//! and when the attempt that will answer it began, without the request or response types
//! carrying anything.
//!
//! A limit above a retry admits whole requests, backoff sleeps and failed attempts
//! included. Counted while it sleeps, a retried request holds a slot the upstream is not
//! using; timed from admission, it looks like one that queued. In a brownout a quarter of
//! the calls are retried after a backoff: a latency-aware limit would read them as a queue
//! and shed calls the upstream had room for. The limit polls its inner future inside
//! [`watch`]; the retry calls [`parked`] when it starts a backoff and [`restarted`] when it
//! sends the retry. The limit lends the slot out while the request sleeps, takes it back
//! (over the limit if need be: the request was admitted) when the retry is sent, and times
//! the request from there: the latency of the attempt that answers, which is what queueing
//! at the upstream lengthens.
//!
//! Outside a `watch`, the reports set a value nobody reads (the next `watch` starts
//! afresh). Both ends cost a thread-local access.

use std::cell::Cell;

use tokio::time::Instant;

/// What a retry below did during one poll (the latest, when it did several things).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The request sleeps in a backoff: no attempt of it is at the upstream.
    Parked,
    /// A retry attempt was sent at this instant.
    Restarted(Instant),
}

thread_local! {
    /// Inside `watch`: what the retry below did last.
    static RESTARTED: Cell<Option<Event>> = const { Cell::new(None) };
}

/// Runs `f` (a poll of the stages below) and returns its result with the latest report of
/// a retry inside it, if any. An enclosing `watch` (a second limit further up) sees it too.
#[inline]
pub fn watch<R>(f: impl FnOnce() -> R) -> (R, Option<Event>) {
    struct Restore(Option<Event>);
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
    let _ = RESTARTED.try_with(|c| c.set(Some(Event::Restarted(now))));
}

/// Reports that the request now sleeps in a backoff before its next attempt.
#[inline]
pub fn parked() {
    let _ = RESTARTED.try_with(|c| c.set(Some(Event::Parked)));
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
        assert!(matches!(at, Some(Event::Restarted(at)) if at >= before));
        let ((), again) = watch(|| ());
        assert_eq!(again, None, "a later poll without a retry reports none");
    }

    #[test]
    fn the_latest_report_wins() {
        let ((), event) = watch(|| {
            restarted();
            parked();
        });
        assert_eq!(event, Some(Event::Parked));
        let ((), event) = watch(|| {
            parked();
            restarted();
        });
        assert!(matches!(event, Some(Event::Restarted(_))));
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
