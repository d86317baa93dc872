//! [`RequestDeadline`]: the time by which a request must be answered, carried in an HTTP
//! request's extensions and, while a deadline stage calls the stages below it, in an
//! ambient slot any stage can read without knowing the request type.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

/// The time by which a request must be answered.
///
/// A deadline stage sets it (the smaller of its policy's timeout and the deadline the
/// request came with); stages below read it to avoid work that cannot finish in time:
/// the retry stage never starts an attempt or a backoff that would end after it. It
/// follows tokio's clock, so `tokio::time::pause()` drives it in tests.
///
/// It travels two ways:
/// - in an HTTP request's extensions ([`RequestDeadline::of`], [`RequestDeadline::set`]),
///   for a caller that has one already, and for the hops after this one;
/// - ambiently, for any request type: [`RequestDeadline::scope`] makes it
///   [`current`](RequestDeadline::current) while the stages below are *called* (tower's
///   `call` is synchronous, so every stage called inside the scope sees it, and captures
///   it in its future if it needs it later).
///
/// ```
/// use std::time::Duration;
/// use tower_prism_core::RequestDeadline;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let deadline = RequestDeadline::after(Duration::from_millis(300));
/// assert!(RequestDeadline::current().is_none());
/// deadline.scope(|| {
///     // what a stage below sees while it is called
///     assert_eq!(RequestDeadline::current(), Some(deadline));
/// });
/// tokio::time::sleep(Duration::from_millis(100)).await;
/// assert_eq!(deadline.remaining(), Duration::from_millis(200));
///
/// let mut request = http::Request::new(());
/// deadline.set(&mut request);
/// assert_eq!(RequestDeadline::of(&request), Some(deadline));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestDeadline {
    at: Instant,
}

thread_local! {
    static CURRENT: Cell<Option<Instant>> = const { Cell::new(None) };
}

impl RequestDeadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        RequestDeadline { at: instant }
    }

    /// A deadline `timeout` from now (tokio's clock). A timeout too large to add to now
    /// is clamped to about 30 years, which no request outlives.
    pub fn after(timeout: Duration) -> Self {
        Self::clamped(Instant::now(), timeout)
    }

    /// `timeout` after `from`, a timeout too large to add clamped to about 30 years.
    fn clamped(from: Instant, timeout: Duration) -> Self {
        let at = from
            .checked_add(timeout)
            .unwrap_or_else(|| from + Duration::from_secs(30 * 365 * 24 * 3600));
        RequestDeadline { at }
    }

    /// A deadline `timeout` after the request being called was received: from now, or,
    /// when a stage above held the request in a queue (a rate limit's or a concurrency
    /// limit's), from when it was queued. For a deadline the caller sent (a `grpc-timeout`
    /// header, say), whose clock started before the request reached the queue: the wait
    /// spends it. A timeout too large to add is clamped as by [`after`](Self::after).
    pub fn after_received(timeout: Duration) -> Self {
        let from = crate::internal::received::get().unwrap_or_else(Instant::now);
        Self::clamped(from, timeout)
    }

    /// The instant the deadline falls at.
    pub fn instant(self) -> Instant {
        self.at
    }

    /// Time left until the deadline, zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(self) -> bool {
        Instant::now() >= self.at
    }

    /// Whether something that takes `duration`, started now, would end after the deadline.
    pub fn cannot_fit(self, duration: Duration) -> bool {
        self.remaining() <= duration
    }

    /// The earlier of two optional deadlines.
    pub fn earliest(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The deadline in an HTTP request's extensions, if it has one.
    pub fn of<B>(request: &http::Request<B>) -> Option<Self> {
        request.extensions().get::<RequestDeadline>().copied()
    }

    /// Puts the deadline in an HTTP request's extensions (replacing one already there).
    pub fn set<B>(self, request: &mut http::Request<B>) {
        request.extensions_mut().insert(self);
    }

    /// The deadline of the request being called, when a deadline stage above is calling
    /// the stages below it (see [`scope`](RequestDeadline::scope)); `None` otherwise.
    #[inline]
    pub fn current() -> Option<Self> {
        CURRENT
            .try_with(Cell::get)
            .ok()
            .flatten()
            .map(|at| RequestDeadline { at })
    }

    /// Runs `f` with this deadline [`current`](RequestDeadline::current), and restores
    /// the one before it afterwards (also when `f` panics).
    pub fn scope<R>(self, f: impl FnOnce() -> R) -> R {
        crate::internal::scoped(&CURRENT, |_| Some(self.at), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn scope_nests_and_restores() {
        let outer = RequestDeadline::after(Duration::from_secs(2));
        let inner = RequestDeadline::after(Duration::from_secs(1));
        outer.scope(|| {
            assert_eq!(RequestDeadline::current(), Some(outer));
            inner.scope(|| assert_eq!(RequestDeadline::current(), Some(inner)));
            assert_eq!(RequestDeadline::current(), Some(outer));
        });
        assert_eq!(RequestDeadline::current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn scope_restores_after_a_panic() {
        let d = RequestDeadline::after(Duration::from_secs(1));
        let caught = std::panic::catch_unwind(|| d.scope(|| panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(RequestDeadline::current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_follows_paused_time_and_saturates() {
        let d = RequestDeadline::after(Duration::from_millis(50));
        assert!(!d.is_expired());
        assert!(d.cannot_fit(Duration::from_millis(50)));
        assert!(!d.cannot_fit(Duration::from_millis(49)));
        tokio::time::advance(Duration::from_millis(80)).await;
        assert!(d.is_expired());
        assert_eq!(d.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_timeout_does_not_panic() {
        let d = RequestDeadline::after(Duration::MAX);
        assert!(d.remaining() > Duration::from_secs(365 * 24 * 3600));
    }

    #[tokio::test(start_paused = true)]
    async fn earliest_picks_the_smaller() {
        let a = RequestDeadline::after(Duration::from_secs(1));
        let b = RequestDeadline::after(Duration::from_secs(2));
        assert_eq!(RequestDeadline::earliest(Some(a), Some(b)), Some(a));
        assert_eq!(RequestDeadline::earliest(None, Some(b)), Some(b));
        assert_eq!(RequestDeadline::earliest(None, None), None);
    }
}
