//! Lets a stage that refuses a request at once, inside its `call` (a concurrency limit
//! shedding it), tell a rate limit above it, which then gives the request's tokens back.
//!
//! A rate limit in front of a concurrency limit spends a token on every request it lets
//! through, the ones the concurrency limit then sheds included. With the rate set to the
//! upstream's capacity, each shed request is a token of that capacity nobody uses: in the
//! lab's overload the upstream idled for them while callers were being refused. Given
//! back, the token admits the next caller, so the rate limit counts the requests sent on
//! to the upstream, not the ones refused on the way.
//!
//! Only a refusal made during `call` is seen: the rate limit watches its inner `call`,
//! which for a stage that decides at once is where the refusal happens. A stage that may
//! send the request again later (a retry) calls the stages below it inside [`hide`]: a
//! refusal of its first attempt is not a refusal of the request. Outside a `watch`, a
//! report sets a value nobody reads. Both ends cost a thread-local access.

use std::cell::Cell;

thread_local! {
    /// Counts the refusals: a `watch` sees one made inside it as a change of count.
    static REFUSALS: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` (the `call` of the stages below) and returns its result with whether a stage
/// inside it reported a refusal.
#[inline]
pub fn watch<R>(f: impl FnOnce() -> R) -> (R, bool) {
    let before = REFUSALS.try_with(Cell::get).unwrap_or(0);
    let out = f();
    let after = REFUSALS.try_with(Cell::get).unwrap_or(0);
    (out, after != before)
}

/// Runs `f` (the `call` of the stages below a stage that may send the request again) so
/// that a refusal inside it is not seen by a `watch` around it.
#[inline]
pub fn hide<R>(f: impl FnOnce() -> R) -> R {
    let before = REFUSALS.try_with(Cell::get).unwrap_or(0);
    let out = f();
    let _ = REFUSALS.try_with(|c| c.set(before));
    out
}

/// Reports that the request being called is refused at once: it will not reach the
/// upstream.
#[inline]
pub fn refused() {
    let _ = REFUSALS.try_with(|c| c.set(c.get().wrapping_add(1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_seen_only_by_a_watch_around_it() {
        refused();
        let ((), seen) = watch(|| ());
        assert!(!seen, "a refusal before the watch");
        let ((), seen) = watch(refused);
        assert!(seen);
        let (((), inner), outer) = watch(|| watch(refused));
        assert!(inner && outer, "nested watches both see it");
    }

    #[test]
    fn a_hidden_refusal_is_not_seen() {
        let ((), seen) = watch(|| hide(refused));
        assert!(!seen);
        let (((), inner), outer) = watch(|| hide(|| watch(refused)));
        assert!(inner && !outer, "a watch inside the hide still sees it");
    }
}
