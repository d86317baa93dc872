//! When the request being called was received, for a stage that held it in a queue: the
//! deadline a caller sent counts from then ([`RequestDeadline::after_received`]), not from
//! when the queue let the request through.
//!
//! [`RequestDeadline::after_received`]: crate::RequestDeadline::after_received

use std::cell::Cell;

use tokio::time::Instant;

thread_local! {
    static RECEIVED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The receipt time of the request being called, inside a [`scope`]; `None` outside one.
#[inline]
pub fn get() -> Option<Instant> {
    RECEIVED.try_with(Cell::get).ok().flatten()
}

/// Runs `f` (a stage calling the stages below it with a request it held in a queue) with
/// `received` as the time that request was received, unless an outer scope has an earlier
/// one; restores the one before it afterwards, also when `f` panics.
pub fn scope<R>(received: Instant, f: impl FnOnce() -> R) -> R {
    super::scoped(
        &RECEIVED,
        |outer| Some(outer.map_or(received, |o| o.min(received))),
        f,
    )
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::RequestDeadline;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_deadline_from_a_queued_request_counts_from_its_receipt() {
        let received = Instant::now();
        tokio::time::advance(300 * MS).await;
        assert_eq!(
            RequestDeadline::after_received(MS * 500).instant(),
            Instant::now() + MS * 500,
            "outside a scope: from now"
        );
        scope(received, || {
            assert_eq!(
                RequestDeadline::after_received(MS * 500).instant(),
                received + MS * 500
            );
            // A queue below a queue: the earlier receipt counts.
            scope(Instant::now(), || assert_eq!(get(), Some(received)));
            assert_eq!(get(), Some(received));
        });
        assert_eq!(get(), None);
        let caught = std::panic::catch_unwind(|| scope(received, || panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(get(), None, "restored after a panic");
    }
}
