//! [`Timers`]: a call's attempt timeout and next hedge on one tokio timer.
//!
//! A tokio `Sleep` is 112 bytes. The response future kept one for the attempt timeout (or
//! the backoff) and one for the hedge delay, and every stage above it carried, and copied,
//! both on every call. The two deadlines are now plain instants and one `Sleep` wakes the
//! call at the sooner of them; a backoff (when neither runs) uses the same `Sleep`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};

pin_project! {
    #[project = SleepProj]
    enum Alarm {
        Off,
        On { #[pin] sleep: Sleep },
    }
}

pin_project! {
    /// The deadlines of a call's attempt in flight and of its next hedge, on one timer.
    /// Nothing touches the runtime's timer until a deadline is set.
    pub(crate) struct Timers {
        #[pin]
        alarm: Alarm,
        // When the attempt in flight times out (`None`: no timeout, or no attempt held).
        attempt: Option<Instant>,
        // When the next hedge is due (`None`: none planned).
        hedge: Option<Instant>,
    }
}

impl Timers {
    /// Timers for a first attempt that times out after `limit`, if given.
    #[inline]
    pub(crate) fn new(limit: Option<Duration>) -> Self {
        let attempt = limit.map(|limit| Instant::now() + limit);
        Timers {
            alarm: match attempt {
                Some(at) => Alarm::On {
                    sleep: sleep_until(at),
                },
                None => Alarm::Off,
            },
            attempt,
            hedge: None,
        }
    }

    /// A new attempt was sent: it times out after `limit`, if given.
    pub(crate) fn start_attempt(self: Pin<&mut Self>, limit: Option<Duration>) {
        let this = self.project();
        *this.attempt = limit.map(|limit| Instant::now() + limit);
        rearm(this.alarm, soonest(*this.attempt, *this.hedge));
    }

    /// The attempt held inline answered: no timeout runs for it any more.
    pub(crate) fn end_attempt(self: Pin<&mut Self>) {
        let this = self.project();
        if this.attempt.take().is_some() {
            rearm(this.alarm, *this.hedge);
        }
    }

    /// The next hedge is due after `delay`.
    pub(crate) fn start_hedge(self: Pin<&mut Self>, delay: Duration) {
        let this = self.project();
        *this.hedge = Some(Instant::now() + delay);
        rearm(this.alarm, soonest(*this.attempt, *this.hedge));
    }

    /// No hedge is planned any more.
    pub(crate) fn end_hedge(self: Pin<&mut Self>) {
        let this = self.project();
        if this.hedge.take().is_some() {
            rearm(this.alarm, *this.attempt);
        }
    }

    /// A backoff of `delay` before the next attempt (no attempt and no hedge run).
    pub(crate) fn start_backoff(self: Pin<&mut Self>, delay: Duration) {
        let this = self.project();
        *this.attempt = None;
        *this.hedge = None;
        rearm(this.alarm, Some(Instant::now() + delay));
    }

    /// Whether the backoff is over (at once if none was set).
    pub(crate) fn poll_backoff(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().alarm.project() {
            SleepProj::On { sleep } => sleep.poll(cx),
            SleepProj::Off => Poll::Ready(()),
        }
    }

    /// Whether the attempt in flight has timed out; if not, the waker is registered for
    /// the sooner deadline.
    pub(crate) fn attempt_expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        let Some(at) = *this.attempt else {
            return false;
        };
        poll_fired(this.alarm, cx) && at <= Instant::now()
    }

    /// Whether the planned hedge is due (with none planned, it is); if not, the waker is
    /// registered for the sooner deadline.
    pub(crate) fn poll_hedge(self: Pin<&mut Self>, cx: &mut Context<'_>) -> HedgeDue {
        let this = self.project();
        let Some(at) = *this.hedge else {
            return HedgeDue::Now;
        };
        if !poll_fired(this.alarm, cx) {
            return HedgeDue::Later;
        }
        if at <= Instant::now() {
            HedgeDue::Now
        } else {
            // The alarm was for the attempt's timeout, which its owner must handle first.
            HedgeDue::AttemptTimedOut
        }
    }
}

/// What [`Timers::poll_hedge`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HedgeDue {
    /// The hedge is due.
    Now,
    /// Not yet; the waker is registered.
    Later,
    /// The attempt in flight timed out before the hedge was due (no waker registered:
    /// look at the attempt).
    AttemptTimedOut,
}

fn soonest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sets the alarm for `at` (or off), reusing the armed `Sleep`.
fn rearm(mut alarm: Pin<&mut Alarm>, at: Option<Instant>) {
    match (alarm.as_mut().project(), at) {
        (SleepProj::On { sleep }, Some(at)) => {
            if sleep.deadline() != at {
                sleep.reset(at);
            }
        }
        (SleepProj::Off, Some(at)) => alarm.set(Alarm::On {
            sleep: sleep_until(at),
        }),
        (SleepProj::On { .. }, None) => alarm.set(Alarm::Off),
        (SleepProj::Off, None) => {}
    }
}

/// Polls the alarm: whether it went off (never, when off).
fn poll_fired(alarm: Pin<&mut Alarm>, cx: &mut Context<'_>) -> bool {
    match alarm.project() {
        SleepProj::On { sleep } => sleep.poll(cx).is_ready(),
        SleepProj::Off => false,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::pin::pin;
    use std::task::Waker;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn the_sooner_deadline_wakes_and_each_is_told_apart() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut t = pin!(Timers::new(Some(100 * MS)));
        t.as_mut().start_hedge(30 * MS);
        assert!(!t.as_mut().attempt_expired(&mut cx));
        assert_eq!(t.as_mut().poll_hedge(&mut cx), HedgeDue::Later);
        tokio::time::advance(30 * MS).await;
        assert_eq!(
            t.as_mut().poll_hedge(&mut cx),
            HedgeDue::Now,
            "the hedge first"
        );
        assert!(
            !t.as_mut().attempt_expired(&mut cx),
            "the attempt still runs"
        );
        t.as_mut().end_hedge();
        assert!(!t.as_mut().attempt_expired(&mut cx));
        tokio::time::advance(70 * MS).await;
        assert!(t.as_mut().attempt_expired(&mut cx));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hedge_waits_out_an_attempt_timeout_that_came_first() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut t = pin!(Timers::new(Some(10 * MS)));
        t.as_mut().start_hedge(50 * MS);
        tokio::time::advance(10 * MS).await;
        assert!(t.as_mut().attempt_expired(&mut cx));
        assert_eq!(t.as_mut().poll_hedge(&mut cx), HedgeDue::AttemptTimedOut);
        t.as_mut().end_attempt();
        assert_eq!(t.as_mut().poll_hedge(&mut cx), HedgeDue::Later);
        tokio::time::advance(40 * MS).await;
        assert_eq!(t.as_mut().poll_hedge(&mut cx), HedgeDue::Now);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backoff_replaces_both_and_nothing_runs_without_a_deadline() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut t = pin!(Timers::new(None));
        assert!(
            !t.as_mut().attempt_expired(&mut cx),
            "no timeout, never expires"
        );
        assert!(
            t.as_mut().poll_backoff(&mut cx).is_ready(),
            "no backoff set"
        );
        t.as_mut().start_hedge(5 * MS);
        t.as_mut().start_backoff(20 * MS);
        assert_eq!(
            t.as_mut().poll_hedge(&mut cx),
            HedgeDue::Now,
            "none planned"
        );
        assert!(t.as_mut().poll_backoff(&mut cx).is_pending());
        tokio::time::advance(20 * MS).await;
        assert!(t.as_mut().poll_backoff(&mut cx).is_ready());
        t.as_mut().start_attempt(Some(5 * MS));
        tokio::time::advance(5 * MS).await;
        assert!(t.as_mut().attempt_expired(&mut cx));
    }
}
