//! [`ResponseFuture`]: one logical call, attempt after attempt.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep, Instant, Sleep};
use tower_prism_core::{BoxError, Classify};
use tower_service::Service;

use crate::backoff::{BackoffKind, Jitter};
use crate::decide::{decide, Decision, Done, Failed, GiveUp};
use crate::error::Error;
use crate::handle::{RetryHandle, Shared};
use crate::hint::ResponseHint;
use crate::replay::ReplayRequest;
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
        handle: RetryHandle,
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
            refund(&this.handle.shared, this.reserved);
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

impl<S, Req, C, R, H> ResponseFuture<S, Req, C, R, H>
where
    S: Service<Req>,
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        future: S::Future,
        service: S,
        template: Option<Req>,
        handle: RetryHandle,
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
            handle,
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
                    if let Some(done) = Self::after_attempt(&mut this, result) {
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
                    let shared: &Shared = &this.handle.shared;
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        refund(shared, this.reserved);
                        let e: BoxError = e.into();
                        tracing::debug!(name = %shared.name, error = %e, "inner service failed before a retry");
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
                        refund(shared, this.reserved);
                        return Poll::Ready(Err(Box::new(Error::ReplayRefused { attempt })));
                    };
                    *this.attempt += 1;
                    let future = this.service.call(request);
                    // Sent: the budget's grant is spent.
                    *this.reserved = None;
                    shared.retries.fetch_add(1, Ordering::Relaxed);
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
    C: Classify<S::Response, BoxError>,
    R: ReplayRequest<Req>,
    H: ResponseHint<S::Response>,
{
    /// An attempt's result: returns it (`Some(output)`) or schedules the next attempt.
    #[inline]
    fn after_attempt(
        this: &mut ResponseFutureProj<'_, S, Req, C, R, H>,
        result: Result<S::Response, BoxError>,
    ) -> Option<Result<S::Response, BoxError>> {
        let outcome = this.classify.classify(result.as_ref());
        let shared: &Shared = &this.handle.shared;
        let attempt = *this.attempt;
        // One clock reading for both the deadline and the budget, taken while the facts
        // are gathered and reused when the budget is asked.
        let now = Cell::new(None);
        let settings = Cell::new(None);
        let grant = Cell::new(None);
        let decision = decide(
            outcome,
            || Self::facts(this, &result, &now, &settings),
            || take_budget(shared, now.get(), &grant),
        );
        if let Some(grant) = grant.get() {
            *this.reserved = Some(grant);
        }
        match decision {
            Decision::Return(done) => {
                let metrics = &shared.metrics;
                metrics.attempts.record(f64::from(attempt));
                match done {
                    Done::Success => {
                        if shared.budget.earns_per_success() {
                            shared.budget.deposit_success_at_instant(Instant::now());
                        }
                    }
                    Done::Fatal => metrics.gave_up_fatal.increment(1),
                    Done::NotRetryable => metrics.gave_up_not_retryable.increment(1),
                }
                Some(result)
            }
            Decision::GiveUp(why) => {
                let max_elapsed = settings
                    .get()
                    .and_then(|s| s.max_elapsed)
                    .unwrap_or_default();
                Some(give_up(shared, why, attempt, max_elapsed, result))
            }
            Decision::RetryAfter(delay) => {
                Self::schedule(this, delay, &result);
                None
            }
        }
    }

    /// What the call knows after a retryable failure, for [`decide`].
    #[inline(never)]
    fn facts(
        this: &ResponseFutureProj<'_, S, Req, C, R, H>,
        result: &Result<S::Response, BoxError>,
        now: &Cell<Option<Instant>>,
        loaded: &Cell<Option<Settings>>,
    ) -> Failed {
        let shared: &Shared = &this.handle.shared;
        let settings = shared.settings.load();
        loaded.set(Some(settings));
        let attempt = *this.attempt;
        let max_attempts = *this.max_attempts;
        let more = attempt < max_attempts;
        let replayable = more
            && this
                .template
                .as_ref()
                .is_some_and(|t| this.replay.can_replay(t));
        let backoff = settings.backoff;
        let random =
            if !replayable || backoff.jitter == Jitter::None || backoff.kind == BackoffKind::None {
                0
            } else {
                shared.random()
            };
        let hint = if replayable && settings.honor_retry_after {
            match result {
                Ok(response) => this.hint.retry_after(response),
                Err(e) => shared.error_hint.and_then(|h| h(&**e)),
            }
        } else {
            None
        };
        let deadline = settings.max_elapsed.and(*this.started);
        now.set(
            (replayable && (shared.budget.is_enabled() || deadline.is_some())).then(Instant::now),
        );
        let elapsed = deadline
            .zip(now.get())
            .map(|(started, now)| now.saturating_duration_since(started));
        Failed {
            settings,
            attempt,
            max_attempts,
            replayable,
            previous_delay: *this.previous_delay,
            random,
            hint,
            elapsed,
        }
    }

    /// Carries out a retry decision: metrics, then the backoff (or straight to readiness).
    fn schedule(
        this: &mut ResponseFutureProj<'_, S, Req, C, R, H>,
        delay: Duration,
        result: &Result<S::Response, BoxError>,
    ) {
        let shared: &Shared = &this.handle.shared;
        let metrics = &shared.metrics;
        let reason = match result {
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
        tracing::debug!(name = %shared.name, attempt = *this.attempt, ?delay, reason, "retrying");
        *this.previous_delay = delay;
        if delay.is_zero() {
            this.state.set(State::Readying);
        } else {
            this.timer.set(Timer::On {
                sleep: sleep(delay),
            });
            this.state.set(State::Backoff);
        }
    }
}

/// Takes one retry from the budget at `now` (always granted when the budget is off),
/// keeping the grant to give back if the retry is never sent.
fn take_budget(shared: &Shared, now: Option<Instant>, grant: &Cell<Option<(u64, i64)>>) -> bool {
    let budget = &shared.budget;
    let (true, Some(now)) = (budget.is_enabled(), now) else {
        return true;
    };
    let epoch = budget.epoch_at(now);
    match budget.take_at(epoch) {
        Some(cost) => {
            grant.set(Some((epoch, cost)));
            true
        }
        None => {
            shared.metrics.budget_exhausted.increment(1);
            false
        }
    }
}

fn give_up<T>(
    shared: &Shared,
    why: GiveUp,
    attempts: u32,
    max_elapsed: Duration,
    result: Result<T, BoxError>,
) -> Result<T, BoxError> {
    let m = &shared.metrics;
    m.attempts.record(f64::from(attempts));
    shared.gave_up.fetch_add(1, Ordering::Relaxed);
    m.gave_up(why).increment(1);
    tracing::debug!(name = %shared.name, attempts, reason = why.label(), "giving up");
    result.map_err(|last| -> BoxError {
        match why {
            GiveUp::MaxAttempts if attempts > 1 => {
                Box::new(Error::RetriesExhausted { attempts, last })
            }
            GiveUp::Budget => Box::new(Error::BudgetExhausted { attempts, last }),
            GiveUp::Deadline => Box::new(Error::DeadlineExceeded {
                attempts,
                max_elapsed,
                last,
            }),
            _ => last,
        }
    })
}
