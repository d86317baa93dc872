//! Lets a retry stage tell the stages above it (a concurrency limit, a circuit breaker)
//! when a request waits to retry after a failed attempt and when the attempt that will
//! answer it began, without the request or response types carrying anything.
//!
//! The stages above see whole requests. A concurrency limit timing a retried request from
//! admission would read its backoff as a queue (in a brownout a quarter of the calls are
//! retried, and a latency-aware limit would shed calls the upstream had room for); it times
//! the request from the latest [`restarted`] instead: the attempt that answers, which is
//! what queueing at the upstream lengthens. A breaker that only counts finished requests
//! would never hear of a failed attempt whose caller gave up during the retry's wait; after
//! [`parked`] it counts such a request as failed, and an attempt that carried the
//! upstream's `Retry-After` at once. The stages take a [`Mark`] before polling their inner future.
//!
//! Outside a poll between a [`Mark`] and its reading, the reports set a value nobody reads
//! (the next mark starts afresh). Both ends cost a thread-local access.

use std::cell::Cell;
use std::time::Duration;

/// What a retry below did during one poll (the latest, when it did several things).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The request sleeps in a backoff after a failed attempt: no attempt of it is at the
    /// upstream. With the upstream's own word on when to come back (`Retry-After`, or an
    /// error's hint), if the failure carried one.
    Parked(Option<Duration>),
    /// A retry attempt was sent (during the poll that reports it: a stage reading its own
    /// clock when it hears of it reads the time of the send).
    Restarted,
}

thread_local! {
    /// Counts the reports: a [`Mark`] sees a report made after it as a change of count.
    static REPORTS: Cell<u32> = const { Cell::new(0) };
    /// The latest report.
    static LATEST: Cell<Option<Event>> = const { Cell::new(None) };
}

/// A point in the reports: taken before a poll of the stages below, asked after it which
/// report, if any, a retry inside made. A mark rather than a closure around the poll: the
/// poll's result (a whole response) is then written once, where the stage keeps it, not
/// returned through the closure and copied.
#[derive(Debug, Clone, Copy)]
pub struct Mark(u32);

impl Mark {
    /// Marks now (before polling the stages below).
    #[inline]
    pub fn now() -> Mark {
        Mark(REPORTS.try_with(Cell::get).unwrap_or(0))
    }

    /// The latest report of a retry since the mark, if any. An enclosing mark (a second
    /// limit further up) sees it too. Without a report, one read of a thread-local count.
    #[inline]
    pub fn event_since(self) -> Option<Event> {
        if REPORTS.try_with(Cell::get).unwrap_or(0) == self.0 {
            None
        } else {
            LATEST.try_with(Cell::get).ok().flatten()
        }
    }
}

fn report(event: Event) {
    let _ = LATEST.try_with(|c| c.set(Some(event)));
    let _ = REPORTS.try_with(|c| c.set(c.get().wrapping_add(1)));
}

/// Reports that a retry attempt starts now.
#[inline]
pub fn restarted() {
    report(Event::Restarted);
}

/// Reports that the request now sleeps in a backoff before its next attempt, after a
/// failure that carried `hint` (the upstream's `Retry-After`, or an error's hint).
#[inline]
pub fn parked(hint: Option<Duration>) {
    report(Event::Parked(hint));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f` and the report a retry made inside it.
    fn watch<R>(f: impl FnOnce() -> R) -> (R, Option<Event>) {
        let mark = Mark::now();
        let out = f();
        (out, mark.event_since())
    }

    #[test]
    fn nothing_is_reported_without_a_retry() {
        let ((), at) = watch(|| ());
        assert_eq!(at, None);
    }

    #[test]
    fn a_retry_inside_is_reported_and_does_not_leak_out() {
        let ((), at) = watch(restarted);
        assert_eq!(at, Some(Event::Restarted));
        let ((), again) = watch(|| ());
        assert_eq!(again, None, "a later poll without a retry reports none");
    }

    #[test]
    fn the_latest_report_wins() {
        let ((), event) = watch(|| {
            restarted();
            parked(None);
        });
        assert_eq!(event, Some(Event::Parked(None)));
        let ((), event) = watch(|| {
            parked(Some(Duration::from_secs(2)));
            restarted();
        });
        assert!(matches!(event, Some(Event::Restarted)));
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
