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
//! Only a refusal made during `call` is seen: the rate limit marks the count before its
//! inner `call` and compares after it, which for a stage that decides at once is where the
//! refusal happens. A stage that may send the request again later (a retry) takes back
//! the refusals of its first attempt ([`Mark::hide_since`]): they are not the request's.
//! Without a mark, a report sets a value nobody reads. Both ends cost a thread-local
//! access.

use std::cell::Cell;

thread_local! {
    /// Counts the refusals: a [`Mark`] sees one made after it as a change of count.
    static REFUSALS: Cell<u32> = const { Cell::new(0) };
}

/// The count of refusals at one point of a `call`, to compare with later. A mark rather
/// than a closure around the `call`: a future returned through a closure is one more copy
/// of it, and stack futures are hundreds of bytes.
#[derive(Debug, Clone, Copy)]
pub struct Mark(u32);

impl Mark {
    /// Marks now (before calling the stages below).
    #[inline]
    pub fn now() -> Mark {
        Mark(REFUSALS.try_with(Cell::get).unwrap_or(0))
    }

    /// Whether a stage reported a refusal since the mark.
    #[inline]
    pub fn refused_since(self) -> bool {
        REFUSALS.try_with(Cell::get).unwrap_or(0) != self.0
    }

    /// Takes back the refusals reported since the mark, so that marks made before it do
    /// not see them: for a stage that may send the request again (a retry), whose first
    /// attempt being refused is not the request being refused.
    #[inline]
    pub fn hide_since(self) {
        let _ = REFUSALS.try_with(|c| c.set(self.0));
    }
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
    fn a_refusal_is_seen_only_by_a_mark_before_it() {
        refused();
        let mark = Mark::now();
        assert!(!mark.refused_since(), "a refusal before the mark");
        refused();
        let inner = Mark::now();
        refused();
        assert!(
            mark.refused_since() && inner.refused_since(),
            "both marks see it"
        );
    }

    #[test]
    fn a_hidden_refusal_is_not_seen() {
        let outer = Mark::now();
        let hiding = Mark::now();
        let inside = Mark::now();
        refused();
        assert!(
            inside.refused_since(),
            "a mark inside the hidden part sees it"
        );
        hiding.hide_since();
        assert!(!outer.refused_since());
    }
}
