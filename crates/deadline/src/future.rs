//! [`ResponseFuture`] of the [`Deadline`](crate::Deadline) service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_prism_core::BoxError;

use crate::error::{Error, ExpiryReason};
use crate::handle::DeadlineHandle;

pin_project! {
    /// The response future of [`Deadline`](crate::Deadline): the inner call raced against
    /// its deadline's timer (inline, no allocation), the inner call alone when the request
    /// has no deadline or the stage is in [pass-through](crate::Deadline::pass_through)
    /// mode, or an expiry.
    ///
    /// The timer is armed at the first poll the inner call does not answer: a call that
    /// answers at once never touches the runtime's timer.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[project_replace = KindOwned]
    enum Kind<F> {
        /// No deadline, or a pass-through stage: the inner future as it is.
        Plain {
            #[pin]
            future: F,
        },
        /// The inner future, until the deadline's timer (armed at the first poll the
        /// inner future is pending) fires.
        Timed {
            #[pin]
            future: F,
            #[pin]
            sleep: Option<Sleep>,
            expiry: Expiry,
        },
        /// The deadline passed; `handle` is taken when the expiry is counted, so a future
        /// polled again answers the same error without counting it twice.
        Expired {
            handle: Option<DeadlineHandle>,
            after: Duration,
            reason: ExpiryReason,
        },
    }
}

/// What a timed call reports if its deadline passes.
pub(crate) struct Expiry {
    pub(crate) deadline: Instant,
    pub(crate) handle: DeadlineHandle,
    pub(crate) after: Duration,
    pub(crate) reason: ExpiryReason,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn plain(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Plain { future },
        }
    }

    pub(crate) fn timed(future: F, expiry: Expiry) -> Self {
        ResponseFuture {
            kind: Kind::Timed {
                future,
                sleep: None,
                expiry,
            },
        }
    }

    pub(crate) fn expired(handle: DeadlineHandle, reason: ExpiryReason) -> Self {
        ResponseFuture {
            kind: Kind::Expired {
                handle: Some(handle),
                after: Duration::ZERO,
                reason,
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        let (after, reason) = match kind.as_mut().project() {
            KindProj::Plain { future } => return future.poll(cx).map_err(Into::into),
            KindProj::Timed {
                future,
                mut sleep,
                expiry,
            } => {
                // The inner future first: an answer ready at the deadline still wins.
                if let Poll::Ready(result) = future.poll(cx) {
                    if result.is_err() && Instant::now() >= expiry.deadline {
                        // A stage below gave up on the call at the deadline itself (a
                        // retry left no time for another attempt): the call ran its whole
                        // deadline, an expiry as much as one this stage cuts.
                        expiry.handle.record_expiry(expiry.reason, expiry.after);
                    }
                    return Poll::Ready(result.map_err(Into::into));
                }
                if sleep.is_none() {
                    sleep.set(Some(tokio::time::sleep_until(expiry.deadline)));
                }
                if let Some(sleep) = sleep.as_pin_mut() {
                    if sleep.poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                let (after, reason) = (expiry.after, expiry.reason);
                // Expired: drop the inner call now (its permits, connections...), not
                // when the caller gets round to dropping this future.
                let handle = None;
                if let KindOwned::Timed { expiry, .. } = kind.project_replace(Kind::Expired {
                    handle,
                    after,
                    reason,
                }) {
                    expiry.handle.record_expiry(reason, after);
                }
                (after, reason)
            }
            KindProj::Expired {
                handle,
                after,
                reason,
            } => {
                if let Some(handle) = handle.take() {
                    handle.record_expiry(*reason, *after);
                }
                (*after, *reason)
            }
        };
        Poll::Ready(Err(Box::new(Error::Expired { after, reason })))
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Plain { .. } => f.write_str("ResponseFuture::Plain"),
            Kind::Timed { expiry, .. } => f
                .debug_struct("ResponseFuture::Timed")
                .field("deadline", &expiry.deadline)
                .field("reason", &expiry.reason)
                .finish(),
            Kind::Expired { after, reason, .. } => f
                .debug_struct("ResponseFuture::Expired")
                .field("after", after)
                .field("reason", reason)
                .finish(),
        }
    }
}
