//! The hedges of one call: attempts in flight beside the one the response future holds
//! inline. Boxed one by one, in a `Vec` that allocates only when the first hedge is sent,
//! so a call whose first attempt answers before the hedge delay allocates nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep, Instant, Sleep};
use tower_prism_core::BoxError;

use crate::error::Error;

pin_project! {
    /// One hedge in flight, with its own attempt timeout.
    pub(crate) struct Hedged<F> {
        #[pin]
        future: F,
        #[pin]
        timeout: Option<Sleep>,
        limit: Duration,
        // When it was sent (only for a percentile delay, which records latencies).
        pub(crate) sent_at: Option<Instant>,
    }
}

/// The hedges in flight.
pub(crate) struct Race<F> {
    hedges: Vec<Pin<Box<Hedged<F>>>>,
}

impl<F> Default for Race<F> {
    fn default() -> Self {
        Race { hedges: Vec::new() }
    }
}

impl<F> Race<F> {
    pub fn len(&self) -> usize {
        self.hedges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hedges.is_empty()
    }

    /// Adds a hedge just sent; `max` sizes the `Vec` on the first push.
    pub fn push(
        &mut self,
        future: F,
        timeout: Option<Duration>,
        sent_at: Option<Instant>,
        max: usize,
    ) {
        if self.hedges.capacity() == 0 {
            self.hedges.reserve_exact(max);
        }
        self.hedges.push(Box::pin(Hedged {
            future,
            timeout: timeout.map(sleep),
            limit: timeout.unwrap_or_default(),
            sent_at,
        }));
    }

    /// Cancels every hedge in flight (drops it at once), calling `each` with its send
    /// time first; returns how many there were.
    pub fn cancel(&mut self, mut each: impl FnMut(Option<Instant>)) -> usize {
        let n = self.hedges.len();
        for h in self.hedges.drain(..) {
            each(h.sent_at);
        }
        n
    }
}

impl<F, T, E> Race<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    /// Polls every hedge; the first that finished (or timed out) is taken out of the race
    /// and returned, with its send time.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(Result<T, BoxError>, Option<Instant>)> {
        for i in 0..self.hedges.len() {
            let h = self.hedges[i].as_mut().project();
            let result = match h.future.poll(cx) {
                Poll::Ready(r) => r.map_err(Into::into),
                Poll::Pending => {
                    let expired = h
                        .timeout
                        .as_pin_mut()
                        .is_some_and(|t| t.poll(cx).is_ready());
                    if !expired {
                        continue;
                    }
                    Err(Box::new(Error::AttemptTimedOut { timeout: *h.limit }) as BoxError)
                }
            };
            let done = self.hedges.swap_remove(i);
            return Poll::Ready((result, done.sent_at));
        }
        Poll::Pending
    }
}
