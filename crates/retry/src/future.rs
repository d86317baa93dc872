//! [`ResponseFuture`]: one logical call, attempt after attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep, Instant, Sleep};
use tower_prism_core::{Classify, Outcome};
use tower_service::Service;

use crate::backoff::{BackoffKind, Jitter};
use crate::error::{BoxError, Error};
use crate::layer::Shared;
use crate::policy::{ReplayRequest, ResponseHint};
use crate::settings::Settings;

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Called { #[pin] future: F },
        // Waiting out the backoff (on the timer) before the next attempt.
        Backoff,
        // Driving the inner service's clone to readiness for the next attempt.
        Readying,
    }
}

pin_project! {
    #[project = TimerProj]
    enum Timer {
        Off,
        On { #[pin] sleep: Sleep },
    }
}

pin_project! {
    /// The response future of [`Retry`](crate::Retry). Dropping it cancels the attempt in
    /// flight (or the backoff) and makes no further attempt; a retry the budget granted but
    /// that was never sent is given back to the budget.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, Req, C, R, H>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        // The attempt timeout while `Called`, the backoff while `Backoff`.
        #[pin]
        timer: Timer,
        service: S,
        // The request retries are copied from (`None`: no retry possible, or the last
        // attempt took it).
        template: Option<Req>,
        shared: Arc<Shared>,
        max_attempts: u32,
        attempt_timeout: Option<Duration>,
        // When the call started (only read when `max_elapsed` is set).
        started: Option<Instant>,
        attempt: u32,
        previous_delay: Duration,
        // The budget's grant for the retry planned but not yet sent (its epoch and cost),
        // given back if the retry is never sent.
        reserved: Option<(u64, i64)>,
        classify: C,
        replay: R,
        hint: H,
    }

    impl<S, Req, C, R, H> PinnedDrop for ResponseFuture<S, Req, C, R, H>
    where
        S: Service<Req>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            refund(this.shared, this.reserved);
        }
    }
}

/// Gives a planned retry's grant back to the budget (the retry was never sent).
#[inline]
fn refund(shared: &Shared, reserved: &mut Option<(u64, i64)>) {
    if let Some((epoch, cost)) = reserved.take() {
        shared.budget.refund_at(epoch, cost);
    }
}

impl<S, Req, C, R, H> std::fmt::Debug for ResponseFuture<S, Req, C, R, H>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
enum GiveUp {
    MaxAttempts,
    NotReplayable,
    Deadline,
    Budget,
    RetryAfter,
}

impl<S, Req, C, R, H> ResponseFuture<S, Req, C, R, H>
where
    S: Service<Req>,
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        future: S::Future,
        service: S,
        template: Option<Req>,
        shared: Arc<Shared>,
        max_attempts: u32,
        attempt_timeout: Option<Duration>,
        started: Option<Instant>,
        classify: C,
        replay: R,
        hint: H,
    ) -> Self {
        let timer = match attempt_timeout {
            Some(t) => Timer::On { sleep: sleep(t) },
            None => Timer::Off,
        };
        ResponseFuture {
            state: State::Called { future },
            timer,
            service,
            template,
            shared,
            max_attempts,
            attempt_timeout,
            started,
            attempt: 1,
            previous_delay: Duration::ZERO,
            reserved: None,
            classify,
            replay,
            hint,
        }
    }
}

impl<S, Req, C, R, H> Future for ResponseFuture<S, Req, C, R, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError>,
    R: ReplayRequest<Req>,
    H: ResponseHint<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result: Result<S::Response, BoxError> = match future.poll(cx) {
                        Poll::Ready(r) => r.map_err(Into::into),
                        Poll::Pending => {
                            let expired = match this.timer.as_mut().project() {
                                TimerProj::On { sleep } => sleep.poll(cx).is_ready(),
                                TimerProj::Off => false,
                            };
                            if !expired {
                                return Poll::Pending;
                            }
                            let timeout = this.attempt_timeout.unwrap_or_default();
                            Err(Box::new(Error::AttemptTimedOut { timeout }))
                        }
                    };
                    let shared: &Shared = this.shared;
                    let metrics = &shared.metrics;
                    let attempt = *this.attempt;
                    match this.classify.classify(result.as_ref()) {
                        Outcome::Success => {
                            metrics.attempts.record(f64::from(attempt));
                            return Poll::Ready(result);
                        }
                        Outcome::Fatal => {
                            metrics.attempts.record(f64::from(attempt));
                            metrics.gave_up_fatal.increment(1);
                            return Poll::Ready(result);
                        }
                        Outcome::Failure { retryable: false } => {
                            metrics.attempts.record(f64::from(attempt));
                            metrics.gave_up_not_retryable.increment(1);
                            return Poll::Ready(result);
                        }
                        Outcome::Failure { retryable: true } => {}
                    }
                    if let Some(done) = Self::after_retryable_failure(&mut this, attempt, result) {
                        return Poll::Ready(done);
                    }
                }
                StateProj::Backoff => {
                    if let TimerProj::On { sleep } = this.timer.as_mut().project() {
                        ready!(sleep.poll(cx));
                    }
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        refund(this.shared, this.reserved);
                        let e: BoxError = e.into();
                        tracing::debug!(name = %this.shared.name, error = %e, "inner service failed before a retry");
                        return Poll::Ready(Err(e));
                    }
                    // The last attempt sends the template itself; others send a copy.
                    let request = if *this.attempt + 1 >= *this.max_attempts {
                        this.template.take()
                    } else {
                        this.template.as_ref().and_then(|t| this.replay.replay(t))
                    };
                    let Some(request) = request else {
                        // Only if `replay` contradicts the `can_replay` that planned this retry.
                        let attempt = *this.attempt + 1;
                        refund(this.shared, this.reserved);
                        return Poll::Ready(Err(Box::new(Error::ReplayRefused { attempt })));
                    };
                    *this.attempt += 1;
                    let future = this.service.call(request);
                    // Sent: the budget's grant is spent.
                    *this.reserved = None;
                    this.shared.retries.fetch_add(1, Ordering::Relaxed);
                    this.state.set(State::Called { future });
                    match *this.attempt_timeout {
                        Some(t) => this.timer.set(Timer::On { sleep: sleep(t) }),
                        None => this.timer.set(Timer::Off),
                    }
                }
            }
        }
    }
}

impl<S, Req, C, R, H> ResponseFuture<S, Req, C, R, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: ReplayRequest<Req>,
    H: ResponseHint<S::Response>,
{
    /// A retryable failure: gives up (`Some(output)`) or schedules the next attempt.
    #[inline(never)]
    fn after_retryable_failure(
        this: &mut ResponseFutureProj<'_, S, Req, C, R, H>,
        attempt: u32,
        result: Result<S::Response, BoxError>,
    ) -> Option<Result<S::Response, BoxError>> {
        let shared: &Shared = this.shared;
        let metrics = &shared.metrics;
        let settings = shared.settings.load();
        let max_attempts = *this.max_attempts;
        if attempt >= max_attempts {
            return Some(give_up(
                shared,
                GiveUp::MaxAttempts,
                attempt,
                &settings,
                result,
            ));
        }
        if !this
            .template
            .as_ref()
            .is_some_and(|t| this.replay.can_replay(t))
        {
            return Some(give_up(
                shared,
                GiveUp::NotReplayable,
                attempt,
                &settings,
                result,
            ));
        }
        let backoff = settings.backoff;
        let random = if backoff.jitter == Jitter::None || backoff.kind == BackoffKind::None {
            0
        } else {
            shared.random()
        };
        let mut delay = backoff.delay(attempt, *this.previous_delay, random);
        // A hint is waited out only up to `max_retry_after`: an upstream (or a stage
        // below) asking for longer gets its answer passed back at once, never a caller
        // held for as long as a header says.
        let mut hint = None;
        if settings.honor_retry_after {
            hint = match &result {
                Ok(response) => this.hint.retry_after(response),
                Err(e) => shared.error_hint.and_then(|h| h(&**e)),
            };
            if let Some(wait) = hint {
                if wait > settings.max_retry_after {
                    return Some(give_up(
                        shared,
                        GiveUp::RetryAfter,
                        attempt,
                        &settings,
                        result,
                    ));
                }
                delay = delay.max(wait);
            }
        }
        let budget = shared.budget.is_enabled();
        let deadline = settings.max_elapsed.zip(*this.started);
        // One clock reading for both the deadline and the budget.
        let now = (budget || deadline.is_some()).then(Instant::now);
        if let (Some((max, started)), Some(now)) = (deadline, now) {
            let elapsed = now.saturating_duration_since(started);
            if elapsed.saturating_add(delay) > max {
                // A hint past the deadline is the upstream's answer to pass on, as above.
                let why = match hint {
                    Some(wait) if elapsed.saturating_add(wait) > max => GiveUp::RetryAfter,
                    _ => GiveUp::Deadline,
                };
                return Some(give_up(shared, why, attempt, &settings, result));
            }
        }
        let refused = match (budget, now) {
            (true, Some(now)) => {
                let epoch = shared.budget.epoch_at(now);
                match shared.budget.take_at(epoch) {
                    Some(cost) => {
                        *this.reserved = Some((epoch, cost));
                        false
                    }
                    None => true,
                }
            }
            _ => false,
        };
        if refused {
            metrics.budget_exhausted.increment(1);
            return Some(give_up(shared, GiveUp::Budget, attempt, &settings, result));
        }
        let reason = match &result {
            Ok(_) => {
                metrics.retry_status.increment(1);
                "status"
            }
            Err(e)
                if e.downcast_ref::<Error>()
                    .is_some_and(|e| matches!(e, Error::AttemptTimedOut { .. })) =>
            {
                metrics.retry_timeout.increment(1);
                "timeout"
            }
            Err(_) => {
                metrics.retry_error.increment(1);
                "error"
            }
        };
        metrics.backoff.record(delay.as_secs_f64());
        tracing::debug!(name = %shared.name, attempt, ?delay, reason, "retrying");
        drop(result);
        *this.previous_delay = delay;
        if delay.is_zero() {
            this.state.set(State::Readying);
        } else {
            this.timer.set(Timer::On {
                sleep: sleep(delay),
            });
            this.state.set(State::Backoff);
        }
        None
    }
}

fn give_up<T>(
    shared: &Shared,
    why: GiveUp,
    attempts: u32,
    settings: &Settings,
    result: Result<T, BoxError>,
) -> Result<T, BoxError> {
    let m = &shared.metrics;
    m.attempts.record(f64::from(attempts));
    shared.gave_up.fetch_add(1, Ordering::Relaxed);
    let reason = match why {
        GiveUp::MaxAttempts => {
            m.gave_up_max_attempts.increment(1);
            "max_attempts"
        }
        GiveUp::NotReplayable => {
            m.gave_up_not_replayable.increment(1);
            "not_replayable"
        }
        GiveUp::Deadline => {
            m.gave_up_deadline.increment(1);
            "deadline"
        }
        GiveUp::Budget => {
            m.gave_up_budget.increment(1);
            "budget"
        }
        GiveUp::RetryAfter => {
            m.gave_up_retry_after.increment(1);
            "retry_after"
        }
    };
    tracing::debug!(name = %shared.name, attempts, reason, "giving up");
    result.map_err(|last| -> BoxError {
        match why {
            GiveUp::MaxAttempts if attempts > 1 => {
                Box::new(Error::RetriesExhausted { attempts, last })
            }
            GiveUp::Budget => Box::new(Error::BudgetExhausted { attempts, last }),
            GiveUp::Deadline => Box::new(Error::DeadlineExceeded {
                attempts,
                max_elapsed: settings.max_elapsed.unwrap_or_default(),
                last,
            }),
            _ => last,
        }
    })
}
