//! [`Attempts`]: one logical call of an engaged retry stage, attempt after attempt (and,
//! with hedging, the hedges racing an attempt: `hedging.rs`). The public
//! [`ResponseFuture`](crate::ResponseFuture) wraps it.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use sync_wrapper::SyncWrapper;
use tokio::time::Instant;
use tower_prism_core::internal::attempt;
use tower_prism_core::internal::route::call_avoiding;
use tower_prism_core::{BoxError, Classify, Outcome, RequestDeadline};
use tower_service::Service;

use crate::backoff::{BackoffKind, Jitter};
use crate::decide::{decide, Decision, Done, Failed, GiveUp};
use crate::error::Error;
use crate::handle::Shared;
use crate::hint::ResponseHint;
use crate::race::Race;
use crate::replay::ReplayRequest;
use crate::settings::{Hedge, Settings};
use crate::stage::Stage;
use crate::timers::Timers;

pin_project! {
    #[project = StateProj]
    pub(crate) enum State<F, O> {
        // An attempt is in flight (hedges of it may be too).
        Called { #[pin] future: F },
        // The attempt failed while hedges of it are still in flight or one is on its way;
        // `last` is the latest failure nothing else in flight stands behind, the answer
        // if the hedge planned after it cannot go after all. Only ever taken out whole,
        // so wrapped to keep the future `Sync` whatever the response type.
        Waiting { last: Option<SyncWrapper<O>> },
        // Waiting out the backoff (on the timer) before the next attempt.
        Backoff,
        // Driving the inner service's clone to readiness for the next attempt.
        Readying,
        // Answered; nothing left in flight.
        Done,
    }
}

/// Where hedging stands for the attempt in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HedgeStep {
    /// No (more) hedges for this call.
    Off,
    /// The hedge timer starts at the next `Pending` (so an attempt that answers at once
    /// never touches the timer).
    Idle,
    /// The hedge timer runs.
    Armed,
    /// Hedges remain but the delay would end after the caller's deadline: the next one
    /// goes only when an attempt fails.
    OnFailure,
    /// The delay passed (or an attempt failed) and the budget granted a hedge: readying
    /// the service to send it.
    Readying,
}

/// What a call fixes when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallPlan {
    pub max_attempts: u32,
    pub attempt_timeout: Option<Duration>,
    /// When the call started (only read when `max_elapsed` is set).
    pub started: Option<Instant>,
    /// The caller's deadline, from a deadline stage above.
    pub deadline: Option<RequestDeadline>,
    /// Hedging for this call (`max_hedged` 0: off, or the request cannot be replayed).
    pub hedge: Hedge,
    /// When the first attempt was sent (only for a percentile hedge delay).
    pub sent_at: Option<Instant>,
    /// The endpoint bits the attempts went to, when they learn them (hedging, or
    /// [`avoid_tried_endpoints`](crate::Retry::avoid_tried_endpoints)), so the next goes
    /// elsewhere; 0 when no balancer below reported one.
    pub avoid: u64,
}

pin_project! {
    /// One call of an engaged [`Retry`](crate::Retry). Dropping it cancels the attempts in
    /// flight (hedges included) or the backoff and makes no further attempt; a retry or
    /// hedge the budget granted but that was never sent is given back to the budget.
    #[project = AttemptsProj]
    pub(crate) struct Attempts<S, Req, C, R, H>
    where
        S: Service<Req>,
    {
        #[pin]
        pub(crate) state: State<S::Future, Result<S::Response, BoxError>>,
        // The attempt timeout and the next hedge while `Called`, the backoff while
        // `Backoff`.
        #[pin]
        pub(crate) timers: Timers,
        // The service retries and hedges go through: a clone of the stage's, made when
        // the first is due (`None` until then).
        pub(crate) service: Option<S>,
        // The request retries are copied from (`None`: no retry possible, or the last
        // attempt took it).
        pub(crate) template: Option<Req>,
        pub(crate) stage: Arc<Stage<S>>,
        pub(crate) plan: CallPlan,
        // The attempt timeout in force for the attempt in flight (capped by the deadline).
        pub(crate) timeout: Duration,
        pub(crate) attempt: u32,
        // The attempt after which the backoff schedule restarted (0: it never did).
        pub(crate) backoff_from: u32,
        pub(crate) previous_delay: Duration,
        // The budget's grant for the retry or hedge planned but not yet sent (its epoch
        // and cost), given back if it is never sent.
        pub(crate) reserved: Option<(u64, i64)>,
        pub(crate) step: HedgeStep,
        // An attempt of this hedged call was told not to retry (gRFC A6 pushback): no
        // further hedge or retry is sent, whatever the attempts still in flight answer.
        pub(crate) do_not_retry: bool,
        pub(crate) hedges_sent: u32,
        pub(crate) race: Race<S::Future>,
        pub(crate) classify: C,
        pub(crate) replay: R,
        pub(crate) hint: H,
    }

    impl<S, Req, C, R, H> PinnedDrop for Attempts<S, Req, C, R, H>
    where
        S: Service<Req>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            refund(&this.stage.handle.shared, this.reserved);
        }
    }
}

/// The service a call's retries and hedges go through: a clone of the stage's, made the
/// first time one is due. `None` only if the stage kept no service, which its `call` does
/// before it makes a future.
#[inline]
pub(crate) fn retry_service<'a, S>(
    service: &'a mut Option<S>,
    stage: &Stage<S>,
) -> Option<&'a mut S> {
    if service.is_none() {
        *service = stage.fresh_service();
    }
    service.as_mut()
}

/// The error of a retry or hedge with no service to go through (see [`retry_service`]).
#[cold]
pub(crate) fn no_service() -> BoxError {
    "the retry stage kept no service to send a retry through".into()
}

/// Gives a planned retry's grant back to the budget (the retry was never sent).
#[inline]
pub(crate) fn refund(shared: &Shared, reserved: &mut Option<(u64, i64)>) {
    if let Some((epoch, cost)) = reserved.take() {
        shared.budget.refund_at(epoch, cost);
    }
}

/// Calls `f` with the caller's deadline ambient again: a retry or a hedge is sent from
/// `poll`, outside the deadline stage's `call`, and the stages below (a balancer, a stage
/// propagating the deadline, the caller's own service) must see it for every attempt, not
/// only for the first.
#[inline]
pub(crate) fn within<T>(deadline: Option<RequestDeadline>, f: impl FnOnce() -> T) -> T {
    match deadline {
        Some(deadline) => deadline.scope(f),
        None => f(),
    }
}

/// The attempt timeout, cut to what is left before the caller's deadline.
#[inline]
pub(crate) fn attempt_limit(
    timeout: Option<Duration>,
    deadline: Option<RequestDeadline>,
) -> Option<Duration> {
    match (timeout, deadline) {
        (Some(t), Some(d)) => Some(t.min(d.remaining())),
        (t, _) => t,
    }
}

impl<S, Req, C, R, H> std::fmt::Debug for Attempts<S, Req, C, R, H>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.plan.max_attempts)
            .field("hedges_sent", &self.hedges_sent)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C, R, H> Attempts<S, Req, C, R, H>
where
    S: Service<Req>,
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        future: S::Future,
        template: Option<Req>,
        stage: Arc<Stage<S>>,
        plan: CallPlan,
        classify: C,
        replay: R,
        hint: H,
    ) -> Self {
        let limit = attempt_limit(plan.attempt_timeout, plan.deadline);
        // Whatever could panic is done before the future is moved in (the fields are
        // evaluated in order): the compiler then builds it in place rather than in a
        // temporary that unwinding would have to drop.
        let timers = Timers::new(limit);
        Attempts {
            timers,
            service: None,
            template,
            stage,
            timeout: limit.unwrap_or_default(),
            attempt: 1,
            backoff_from: 0,
            previous_delay: Duration::ZERO,
            reserved: None,
            step: if plan.hedge.max_hedged > 0 {
                HedgeStep::Idle
            } else {
                HedgeStep::Off
            },
            do_not_retry: false,
            hedges_sent: 0,
            race: Race::default(),
            plan,
            classify,
            replay,
            hint,
            state: State::Called { future },
        }
    }
}

impl<S, Req, C, R, H> Future for Attempts<S, Req, C, R, H>
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
                            if this.timers.as_mut().attempt_expired(cx) {
                                Err(Box::new(Error::AttemptTimedOut {
                                    timeout: *this.timeout,
                                }))
                            } else if *this.step == HedgeStep::Off && this.race.is_empty() {
                                return Poll::Pending;
                            } else {
                                match Self::poll_hedges(&mut this, cx) {
                                    Poll::Ready(Some(done)) => return Poll::Ready(done),
                                    Poll::Ready(None) => continue,
                                    Poll::Pending => return Poll::Pending,
                                }
                            }
                        }
                    };
                    if *this.step == HedgeStep::Off && this.race.is_empty() {
                        if let Some(done) = Self::after_attempt(&mut this, result) {
                            return Poll::Ready(done);
                        }
                    } else if let Some(done) = Self::primary_answered(&mut this, result) {
                        return Poll::Ready(done);
                    }
                }
                StateProj::Waiting { .. } => match Self::poll_hedges(&mut this, cx) {
                    Poll::Ready(Some(done)) => return Poll::Ready(done),
                    Poll::Ready(None) => continue,
                    Poll::Pending => return Poll::Pending,
                },
                StateProj::Backoff => {
                    ready!(this.timers.as_mut().poll_backoff(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    let shared: &Shared = &this.stage.handle.shared;
                    let Some(service) = retry_service(this.service, this.stage) else {
                        refund(shared, this.reserved);
                        return Poll::Ready(Err(no_service()));
                    };
                    if let Err(e) = ready!(service.poll_ready(cx)) {
                        refund(shared, this.reserved);
                        let e: BoxError = e.into();
                        tracing::debug!(name = %shared.name, error = %e, "inner service failed before a retry");
                        return Poll::Ready(Err(e));
                    }
                    let hedging = this.plan.hedge.max_hedged > 0;
                    // The last attempt sends the template itself (unless hedges may need
                    // it still); others send a copy.
                    let request = if *this.attempt + 1 >= this.plan.max_attempts && !hedging {
                        this.template.take()
                    } else {
                        this.template.as_ref().and_then(|t| this.replay.replay(t))
                    };
                    let Some(mut request) = request else {
                        // Only if `replay` contradicts the `can_replay` that planned this retry.
                        let attempt = *this.attempt + 1;
                        refund(shared, this.reserved);
                        return Poll::Ready(Err(Box::new(Error::ReplayRefused { attempt })));
                    };
                    this.replay
                        .mark_attempt(&mut request, *this.attempt + *this.hedges_sent);
                    *this.attempt += 1;
                    let future = if hedging || this.plan.avoid != 0 {
                        // a retry avoids the endpoints this call tried, as a hedge does
                        let avoid = this.plan.avoid;
                        let (future, bit) = within(this.plan.deadline, || {
                            call_avoiding(avoid, || service.call(request))
                        });
                        this.plan.avoid |= bit;
                        if this.plan.sent_at.is_some() {
                            this.plan.sent_at = Some(Instant::now());
                        }
                        if this.plan.hedge.max_hedged > *this.hedges_sent {
                            *this.step = HedgeStep::Idle;
                        }
                        future
                    } else {
                        within(this.plan.deadline, || service.call(request))
                    };
                    // Sent: the budget's grant is spent. A concurrency limit above times
                    // the request from here.
                    *this.reserved = None;
                    attempt::restarted();
                    shared.retries.fetch_add(1, Ordering::Relaxed);
                    this.state.set(State::Called { future });
                    let limit = attempt_limit(this.plan.attempt_timeout, this.plan.deadline);
                    *this.timeout = limit.unwrap_or_default();
                    this.timers.as_mut().start_attempt(limit);
                }
                StateProj::Done => {
                    // Polled after it answered: a caller's bug, answered without a panic.
                    return Poll::Ready(Err("retry future polled after it completed".into()));
                }
            }
        }
    }
}

impl<S, Req, C, R, H> Attempts<S, Req, C, R, H>
where
    S: Service<Req>,
    C: Classify<S::Response, BoxError>,
    R: ReplayRequest<Req>,
    H: ResponseHint<S::Response>,
{
    /// An attempt's result: returns it (`Some(output)`) or schedules the next attempt.
    #[inline]
    pub(crate) fn after_attempt(
        this: &mut AttemptsProj<'_, S, Req, C, R, H>,
        result: Result<S::Response, BoxError>,
    ) -> Option<Result<S::Response, BoxError>> {
        let outcome = this.classify.classify(result.as_ref());
        Self::conclude(this, outcome, result, this.plan.sent_at)
    }

    /// The result of the last attempt in flight, classified as `outcome`; `sent_at` is
    /// when that attempt was sent (for a percentile hedge delay).
    pub(crate) fn conclude(
        this: &mut AttemptsProj<'_, S, Req, C, R, H>,
        outcome: Outcome,
        result: Result<S::Response, BoxError>,
        sent_at: Option<Instant>,
    ) -> Option<Result<S::Response, BoxError>> {
        let shared: &Shared = &this.stage.handle.shared;
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
                metrics
                    .answered(done == Done::Success, attempt)
                    .increment(1);
                match done {
                    Done::Success => {
                        // One tokio reading for the latency histogram and the budget; the
                        // budget alone reads its own (cheaper) clock.
                        let earns = shared.budget.earns_per_success();
                        match sent_at.zip(shared.latency.get()) {
                            Some((sent_at, h)) => {
                                let now = Instant::now();
                                if earns {
                                    shared.budget.deposit_success_at_instant(now);
                                }
                                h.record(now.saturating_duration_since(sent_at), now);
                            }
                            None if earns => shared.budget.deposit_success(),
                            None => {}
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
                // A call that began while `max_elapsed` was unset never read when it began:
                // once a reload sets it, the call counts it from this retry on.
                if this.plan.started.is_none()
                    && settings.get().is_some_and(|s| s.max_elapsed.is_some())
                {
                    this.plan.started = Some(now.get().unwrap_or_else(Instant::now));
                }
                // The upstream's own word on when to come back, for a breaker above: it
                // records the failure at once, with the hint for its open wait.
                let hint = match &result {
                    Ok(response) => this.hint.retry_after(response),
                    Err(e) => shared.error_hint.and_then(|h| h(&**e)),
                };
                Self::schedule(this, delay, &result, hint);
                if hint.is_some() && settings.get().is_some_and(|s| s.honor_retry_after) {
                    // gRFC A6: once the upstream's pushback is waited out, the retry after
                    // the next failure waits the initial backoff again, as if the schedule
                    // had just begun: the upstream said when to come back, and the growth
                    // so far was the client's guess at that.
                    *this.backoff_from = attempt;
                    *this.previous_delay = Duration::ZERO;
                }
                None
            }
        }
    }

    /// What the call knows after a retryable failure, for [`decide`].
    #[inline(never)]
    fn facts(
        this: &AttemptsProj<'_, S, Req, C, R, H>,
        result: &Result<S::Response, BoxError>,
        now: &Cell<Option<Instant>>,
        loaded: &Cell<Option<Settings>>,
    ) -> Failed {
        let shared: &Shared = &this.stage.handle.shared;
        let settings = shared.settings.load();
        loaded.set(Some(settings));
        let attempt = *this.attempt;
        let max_attempts = this.plan.max_attempts;
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
        let hint = if !replayable || !settings.honor_retry_after {
            None
        } else if *this.do_not_retry {
            // the pushback that said so, over any `max_retry_after`, whichever attempt
            // failed last
            Some(Duration::MAX)
        } else {
            match result {
                Ok(response) => this.hint.retry_after(response),
                Err(e) => shared.error_hint.and_then(|h| h(&**e)),
            }
        };
        let deadline = settings.max_elapsed.and(this.plan.started);
        let caller = this.plan.deadline;
        now.set(
            (replayable && (shared.budget.is_enabled() || deadline.is_some() || caller.is_some()))
                .then(Instant::now),
        );
        let elapsed = deadline
            .zip(now.get())
            .map(|(started, now)| now.saturating_duration_since(started));
        let remaining = caller
            .zip(now.get())
            .map(|(d, now)| d.instant().saturating_duration_since(now));
        Failed {
            settings,
            attempt,
            max_attempts,
            retry: attempt - *this.backoff_from,
            replayable,
            previous_delay: *this.previous_delay,
            random,
            hint,
            elapsed,
            remaining,
        }
    }

    /// Carries out a retry decision: metrics, then the backoff (or straight to readiness).
    fn schedule(
        this: &mut AttemptsProj<'_, S, Req, C, R, H>,
        delay: Duration,
        result: &Result<S::Response, BoxError>,
        hint: Option<Duration>,
    ) {
        let shared: &Shared = &this.stage.handle.shared;
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
            this.timers.as_mut().start_backoff(delay);
            this.state.set(State::Backoff);
            // A breaker above records the failure now if it carried a hint, or if the
            // request is dropped during the wait.
            attempt::parked(hint);
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
    m.answered(false, attempts).increment(1);
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
            GiveUp::CallerDeadline => Box::new(Error::CallerDeadline { attempts, last }),
            _ => last,
        }
    })
}
