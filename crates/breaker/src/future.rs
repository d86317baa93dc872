//! [`ResponseFuture`] of the [`CircuitBreaker`](crate::CircuitBreaker) service.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_prism_core::internal::attempt;
use tower_prism_core::{BoxError, Classify, Outcome, RequestDeadline};

use crate::breaker::Breaker;
use crate::error::Error;
use crate::state::Permit;

pin_project! {
    /// The response future of [`CircuitBreaker`](crate::CircuitBreaker): either the inner
    /// call, whose result is classified and recorded when it completes, or a rejection, or
    /// (for a [pass-through](crate::CircuitBreaker::pass_through) breaker) the inner call
    /// alone.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            guard: PermitGuard,
            classifier: C,
        },
        Rejected {
            retry_after: Duration,
        },
        // A switched-off breaker: only forwards, mapping the error as `Called` does.
        PassThrough {
            #[pin]
            future: F,
        },
    }
}

/// Holds a permit until the call completes; gives it back (records nothing) if dropped
/// before: a cancelled call, a panic in the inner service's `call` or future, or a panic in
/// the classifier, so a half-open probe slot is never lost.
///
/// Two exceptions record a failure: with `count_deadline_expiry` on, a call dropped after
/// the deadline it was called under has passed (see
/// [`BreakerConfig::count_deadline_expiry`](crate::BreakerConfig::count_deadline_expiry));
/// and a call dropped while a retry stage below waits to try again after a failed attempt:
/// its caller gave up on a failure. Uncounted, callers whose deadline is shorter than the
/// retry's wait would keep the breaker blind for as long as the upstream fails.
///
/// A failed attempt that carried the upstream's own word on when to come back (a 429 or
/// 503 with `Retry-After`, or an error's hint) is recorded at once, when the retry below
/// starts waiting it out, with that hint for the open wait: the upstream said it is
/// shedding, and the breaker must not learn it only when the retry gives up, seconds
/// later. The rest of that call's attempts are then the retry's business alone.
pub(crate) struct PermitGuard {
    breaker: Breaker,
    permit: Option<Permit>,
    /// The ambient deadline when the call was made (`None` without a deadline stage above).
    deadline: Option<RequestDeadline>,
    /// While a retry below waits after a failed attempt that carried no hint.
    retrying: bool,
}

impl PermitGuard {
    pub(crate) fn new(breaker: Breaker, permit: Permit, deadline: Option<RequestDeadline>) -> Self {
        PermitGuard {
            breaker,
            permit: Some(permit),
            deadline,
            retrying: false,
        }
    }

    /// Follows what a retry below reported during a poll.
    pub(crate) fn retry_event(&mut self, event: attempt::Event) {
        self.retrying = match event {
            attempt::Event::Parked(Some(hint)) => {
                if let Some(permit) = self.permit.take() {
                    let now = self.breaker.now();
                    self.breaker
                        .record_at(permit, Outcome::RETRYABLE, now, || Some(hint));
                }
                false
            }
            attempt::Event::Parked(None) => true,
            attempt::Event::Restarted => false,
        };
    }

    /// Whether a call dropped now was cut short by its deadline and must count as a
    /// failure. The config switch is read last: it takes the breaker's config lock, which
    /// only a call dropped past its deadline gets to (never a call that completes, nor one
    /// dropped before its deadline or without one), and never while a panic unwinds.
    fn counts_as_expired(&self) -> bool {
        self.deadline.is_some_and(RequestDeadline::is_expired)
            && !std::thread::panicking()
            && self.breaker.config().count_deadline_expiry
    }
}

impl Drop for PermitGuard {
    // Inline: the guard of a call that completed holds no permit, and its drop is one
    // branch in the future's.
    #[inline]
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.dropped_with(permit);
        }
    }
}

impl PermitGuard {
    /// The drop of a guard whose call did not complete: `permit` is recorded as a failure
    /// or given back.
    #[inline(never)]
    fn dropped_with(&mut self, permit: Permit) {
        let gave_up_on_a_failure = self.retrying && !std::thread::panicking();
        if gave_up_on_a_failure || self.counts_as_expired() {
            self.breaker.record(permit, Outcome::RETRYABLE);
        } else {
            self.breaker.release(permit);
        }
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, guard: PermitGuard, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                guard,
                classifier,
            },
        }
    }

    #[inline]
    pub(crate) fn pass_through(future: F) -> Self {
        ResponseFuture {
            kind: Kind::PassThrough { future },
        }
    }

    pub(crate) fn rejected(retry_after: Duration) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { retry_after },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                guard,
                classifier,
            } => {
                let mark = attempt::Mark::now();
                let polled = future.poll(cx);
                if let Some(event) = mark.event_since() {
                    guard.retry_event(event);
                }
                let result = ready!(polled);
                if guard.permit.is_none() {
                    return Poll::Ready(result.map_err(Into::into));
                }
                // Classify while the guard still holds the permit: a panicking
                // classifier unwinds through the guard, which gives the permit back.
                let outcome = classifier.classify(result.as_ref());
                let result: Result<T, BoxError> = result.map_err(Into::into);
                let now = guard.breaker.now();
                let breaker = &guard.breaker;
                // Asked only if this failure opens the circuit: how long the upstream
                // said to wait (a response's, through the classifier; an error's,
                // through the layer's `retry_after_hint`).
                let hint = || match &result {
                    Ok(response) => classifier.retry_after(Ok::<&T, &E>(response)),
                    Err(error) => breaker.error_hint().and_then(|read| read(&**error)),
                };
                if let Some(permit) = guard.permit.take() {
                    breaker.record_at(permit, outcome, now, hint);
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { retry_after } => Poll::Ready(Err(Box::new(Error::CircuitOpen {
                retry_after: *retry_after,
            }))),
            KindProj::PassThrough { future } => future.poll(cx).map_err(Into::into),
        }
    }
}

/// Classifies `result` and records it with the guard's permit (if it still holds one: a
/// failure recorded early, when a retry below started waiting, leaves it none), for the
/// facade's single-future stack ([`crate::direct`]). The breaker's own future does the
/// same in its `poll`, written out: calling this from there cost a client's three-stage
/// stack 45 instructions per call (callgrind, `scripts/call-count`), the compiler inlining
/// less of the recording into that larger function. The result is read, not moved: an
/// HTTP response moved in and out was copied once more per call.
#[inline(always)]
pub(crate) fn record_result<T, C>(
    guard: &mut PermitGuard,
    classifier: &C,
    result: &Result<T, BoxError>,
) where
    C: Classify<T, BoxError>,
{
    if guard.permit.is_none() {
        return;
    }
    // Classify while the guard still holds the permit: a panicking classifier unwinds
    // through the guard, which gives the permit back.
    let outcome = classifier.classify(result.as_ref());
    let now = guard.breaker.now();
    let breaker = &guard.breaker;
    // Asked only if this failure opens the circuit: how long the upstream said to wait (a
    // response's, through the classifier; an error's, through the layer's
    // `retry_after_hint`).
    let hint = || match result {
        Ok(response) => classifier.retry_after(Ok::<&T, &BoxError>(response)),
        Err(error) => breaker.error_hint().and_then(|read| read(&**error)),
    };
    if let Some(permit) = guard.permit.take() {
        breaker.record_at(permit, outcome, now, hint);
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Called { .. } => f.write_str("ResponseFuture::Called"),
            Kind::Rejected { retry_after } => f
                .debug_struct("ResponseFuture::Rejected")
                .field("retry_after", retry_after)
                .finish(),
            Kind::PassThrough { .. } => f.write_str("ResponseFuture::PassThrough"),
        }
    }
}
