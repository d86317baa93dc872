//! Hedging, the response future's part: after the hedge delay with no answer, send the
//! same request again (to another endpoint when a balancer is below), take the first
//! acceptable answer and cancel the rest. The delay is the longest wait before the next
//! hedge (as Polly's): when an attempt fails retryably and a hedge remains, it goes at
//! once (or, if the failure carries a retry-after hint, after it: gRFC A6's pushback), and
//! a zero delay sends every hedge at the first poll. A retryable failure of one
//! attempt while others are in flight (or a hedge is on its way) is set aside; when every
//! attempt of a round has failed and no hedge remains, the last failure goes to the usual
//! retry decision. A pushback saying not to retry ends hedges and retries but leaves the
//! attempts in flight running (gRFC A6), even on a failure that is not retried.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use sync_wrapper::SyncWrapper;
use tokio::time::Instant;
use tower_prism_core::internal::route::call_avoiding;
use tower_prism_core::{BoxError, Classify, Outcome};
use tower_service::Service;

use crate::attempts::{
    attempt_limit, refund, retry_service, within, Attempts, AttemptsProj, HedgeStep, State,
    StateProj,
};
use crate::handle::Shared;
use crate::hint::ResponseHint;
use crate::replay::ReplayRequest;
use crate::timers::HedgeDue;

type Output<S, Req> = Result<<S as Service<Req>>::Response, BoxError>;

fn retryable(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Failure { retryable: true })
}

impl<S, Req, C, R, H> Attempts<S, Req, C, R, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError>,
    R: ReplayRequest<Req>,
    H: ResponseHint<S::Response>,
{
    /// Polls the hedges in flight, then the hedge timer. `Ready(Some(_))`: the call's
    /// answer; `Ready(None)`: something changed (a hedge sent, a retry planned), poll
    /// again; `Pending`: every attempt in flight and the timer have the waker.
    pub(crate) fn poll_hedges(
        this: &mut AttemptsProj<'_, S, Req, C, R, H>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Output<S, Req>>> {
        while let Poll::Ready((result, sent_at)) = this.race.poll_next(cx) {
            let outcome = this.classify.classify(result.as_ref());
            let primary = Self::primary_in_flight(this);
            if retryable(outcome) {
                let others = primary || !this.race.is_empty();
                let next = Self::hedge_at_once(this, &result);
                if others {
                    if next {
                        // the timers changed: poll the attempt held inline again
                        return Poll::Ready(None);
                    }
                    continue; // others may still answer
                }
                if next {
                    // nothing else in flight: this failure answers if the hedge cannot go
                    if let StateProj::Waiting { last } = this.state.as_mut().project() {
                        *last = Some(SyncWrapper::new(result));
                    }
                    continue;
                }
            } else if Self::told_not_to_retry(this, outcome, &result, primary) {
                // the hedge timer stopped: poll the attempt held inline again
                return Poll::Ready(None);
            } else {
                let shared: &Shared = &this.stage.handle.shared;
                shared.hedges_won.fetch_add(1, Ordering::Relaxed);
                shared.metrics.hedges_won.increment(1);
                tracing::debug!(name = %shared.name, attempt = *this.attempt, "a hedge answered first");
                Self::cancel_others(this, primary);
            }
            return Poll::Ready(Self::finish_round(this, outcome, result, sent_at));
        }
        let step = Self::poll_hedge_step(this, cx);
        if step.is_pending()
            && matches!(*this.step, HedgeStep::Off | HedgeStep::OnFailure)
            && this.race.is_empty()
        {
            // The hedge planned after the last failure could not go (budget, deadline,
            // readiness): that failure is the round's.
            if let StateProj::Waiting { last } = this.state.as_mut().project() {
                if let Some(result) = last.take().map(SyncWrapper::into_inner) {
                    let outcome = Outcome::Failure { retryable: true };
                    return Poll::Ready(Self::finish_round(this, outcome, result, None));
                }
            }
        }
        step
    }

    /// The round is over with `result`: the retry decision, or the call's answer (then
    /// nothing is left to poll).
    fn finish_round(
        this: &mut AttemptsProj<'_, S, Req, C, R, H>,
        outcome: Outcome,
        result: Output<S, Req>,
        sent_at: Option<Instant>,
    ) -> Option<Output<S, Req>> {
        Self::end_round(this);
        let done = Self::conclude(this, outcome, result, sent_at);
        if done.is_some() {
            this.state.set(State::Done);
        }
        done
    }

    /// The attempt held inline answered while hedges of it are in flight (or a hedge is
    /// planned): `Some` is the call's answer; `None` means poll again.
    pub(crate) fn primary_answered(
        this: &mut AttemptsProj<'_, S, Req, C, R, H>,
        result: Output<S, Req>,
    ) -> Option<Output<S, Req>> {
        let outcome = this.classify.classify(result.as_ref());
        if retryable(outcome) {
            let next = Self::hedge_at_once(this, &result);
            if next || !this.race.is_empty() {
                // wait for the hedges (the next one may be on its way); the hedge timer
                // runs on
                this.state.set(State::Waiting {
                    last: Some(SyncWrapper::new(result)),
                });
                this.timers.as_mut().end_attempt();
                return None;
            }
        } else if Self::told_not_to_retry(this, outcome, &result, false) {
            this.state.set(State::Waiting {
                last: Some(SyncWrapper::new(result)),
            });
            this.timers.as_mut().end_attempt();
            return None;
        } else {
            Self::cancel_others(this, false);
        }
        Self::end_round(this);
        Self::conclude(this, outcome, result, this.plan.sent_at)
    }

    /// An attempt failed retryably with `result`: the next hedge, if one remains and may
    /// go (hedges left, time left, a replayable request, the budget's grant), is readied
    /// now rather than after the delay. Whether a hedge is on its way.
    fn hedge_at_once(
        this: &mut AttemptsProj<'_, S, Req, C, R, H>,
        result: &Output<S, Req>,
    ) -> bool {
        if matches!(
            *this.step,
            HedgeStep::Idle | HedgeStep::Armed | HedgeStep::OnFailure
        ) {
            this.timers.as_mut().end_hedge();
            let pushback = Self::pushback(this, result).filter(|wait| !wait.is_zero());
            *this.step = match pushback {
                None if Self::may_hedge(this) => HedgeStep::Readying,
                None => HedgeStep::Off,
                // gRFC A6: pushback on a hedged request delays the next hedge by its wait;
                // one that says not to retry (or asks for longer than a retry would wait)
                // stops hedging and, whichever attempt fails last, the retries after it;
                // one longer than the caller's deadline leaves stops hedging.
                Some(Duration::MAX) => {
                    *this.do_not_retry = true;
                    HedgeStep::Off
                }
                Some(wait) if this.plan.deadline.is_some_and(|d| d.cannot_fit(wait)) => {
                    HedgeStep::Off
                }
                Some(wait) => {
                    this.timers.as_mut().start_hedge(wait);
                    HedgeStep::Armed
                }
            };
        }
        matches!(*this.step, HedgeStep::Readying | HedgeStep::Armed)
    }

    /// A failure that is not retried, while other attempts are in flight (`primary`: the
    /// one held inline): if its pushback says not to retry (`GrpcPushback`'s negative or
    /// malformed `grpc-retry-pushback-ms`, or any hint over `max_retry_after`), it ends
    /// hedging and retries for the call but not the others, and is set aside like a
    /// retryable failure. gRFC A6 tells such a pushback from a fatal status: "no further
    /// hedged requests will be sent", while a fatal status cancels the rest. Whether it
    /// was set aside.
    fn told_not_to_retry(
        this: &mut AttemptsProj<'_, S, Req, C, R, H>,
        outcome: Outcome,
        result: &Output<S, Req>,
        primary: bool,
    ) -> bool {
        let others = primary || !this.race.is_empty();
        if !others
            || outcome != Outcome::NOT_RETRYABLE
            || Self::pushback(this, result) != Some(Duration::MAX)
        {
            return false;
        }
        *this.do_not_retry = true;
        Self::end_round(this);
        true
    }

    /// A failure's retry-after hint, as the retry decision reads it: `None` when hints are
    /// not honoured, `Duration::MAX` when it is over `max_retry_after`.
    fn pushback(
        this: &AttemptsProj<'_, S, Req, C, R, H>,
        result: &Output<S, Req>,
    ) -> Option<Duration> {
        let shared: &Shared = &this.stage.handle.shared;
        let settings = shared.settings.load();
        if !settings.honor_retry_after {
            return None;
        }
        let hint = match result {
            Ok(response) => this.hint.retry_after(response),
            Err(e) => shared.error_hint.and_then(|h| h(&**e)),
        }?;
        Some(if hint > settings.max_retry_after {
            Duration::MAX
        } else {
            hint
        })
    }

    fn primary_in_flight(this: &mut AttemptsProj<'_, S, Req, C, R, H>) -> bool {
        matches!(this.state.as_mut().project(), StateProj::Called { .. })
    }

    /// No more hedges of this round: the timer stops and a planned hedge's budget grant
    /// goes back (before the retry decision may take one of its own).
    fn end_round(this: &mut AttemptsProj<'_, S, Req, C, R, H>) {
        refund(&this.stage.handle.shared, this.reserved);
        if *this.step != HedgeStep::Off {
            this.timers.as_mut().end_hedge();
            *this.step = HedgeStep::Off;
        }
    }

    /// Drops every other attempt in flight now, counting them as cancelled. A cancelled
    /// attempt's time so far is recorded as a latency for a percentile delay: it is a
    /// lower bound of its latency, and leaving the slow attempts out would drag the
    /// percentile down each time a hedge wins.
    fn cancel_others(this: &mut AttemptsProj<'_, S, Req, C, R, H>, primary: bool) {
        let shared: &Shared = &this.stage.handle.shared;
        let latency = shared.latency.get().filter(|_| this.plan.sent_at.is_some());
        let now = latency.map(|_| Instant::now());
        let mut record = |sent_at: Option<Instant>| {
            if let (Some(h), Some(now), Some(sent_at)) = (latency, now, sent_at) {
                h.record(now.saturating_duration_since(sent_at), now);
            }
        };
        let mut n = this.race.cancel(&mut record) as u64;
        if primary {
            record(this.plan.sent_at);
            this.state.set(State::Done);
            n += 1;
        }
        if n > 0 {
            shared.cancelled_attempts.fetch_add(n, Ordering::Relaxed);
            shared.metrics.cancelled_attempts.increment(n);
        }
    }

    /// Drives the hedge timer, the budget and the service's readiness, and sends a hedge
    /// when all allow it (`Ready(None)`: poll again, the new hedge included).
    fn poll_hedge_step(
        this: &mut AttemptsProj<'_, S, Req, C, R, H>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Output<S, Req>>> {
        loop {
            match *this.step {
                HedgeStep::Off | HedgeStep::OnFailure => return Poll::Pending,
                HedgeStep::Idle => {
                    let delay = this.stage.handle.shared.hedge_delay(this.plan.hedge);
                    if this.plan.deadline.is_some_and(|d| d.cannot_fit(delay)) {
                        // a hedge sent at the deadline could not answer in time; one sent
                        // at once, when an attempt fails, may
                        *this.step = HedgeStep::OnFailure;
                        continue;
                    }
                    if delay.is_zero() {
                        // parallel mode: the hedge goes now, without the timer
                        *this.step = if Self::may_hedge(this) {
                            HedgeStep::Readying
                        } else {
                            HedgeStep::Off
                        };
                        continue;
                    }
                    this.timers.as_mut().start_hedge(delay);
                    *this.step = HedgeStep::Armed;
                }
                HedgeStep::Armed => {
                    match this.timers.as_mut().poll_hedge(cx) {
                        HedgeDue::Later => return Poll::Pending,
                        // poll again: the attempt's timeout is handled first
                        HedgeDue::AttemptTimedOut => return Poll::Ready(None),
                        HedgeDue::Now => {}
                    }
                    this.timers.as_mut().end_hedge();
                    // The timer now waits for the attempt's timeout alone: register for it
                    // (or, if it has passed, poll again to handle it).
                    if this.timers.as_mut().attempt_expired(cx) {
                        return Poll::Ready(None);
                    }
                    if Self::body_in_use(this) {
                        // A copy sent now would fail: look again after another delay.
                        *this.step = HedgeStep::Idle;
                        continue;
                    }
                    *this.step = if Self::may_hedge(this) {
                        HedgeStep::Readying
                    } else {
                        HedgeStep::Off
                    };
                }
                HedgeStep::Readying => {
                    let shared: &Shared = &this.stage.handle.shared;
                    let Some(service) = retry_service(this.service, this.stage) else {
                        refund(shared, this.reserved);
                        *this.step = HedgeStep::Off;
                        continue;
                    };
                    match service.poll_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => {
                            let e: BoxError = e.into();
                            tracing::debug!(name = %shared.name, error = %e, "inner service failed before a hedge; no more hedges for this call");
                            refund(shared, this.reserved);
                            *this.step = HedgeStep::Off;
                            continue;
                        }
                        Poll::Ready(Ok(())) => {}
                    }
                    let Some(mut request) =
                        this.template.as_ref().and_then(|t| this.replay.replay(t))
                    else {
                        refund(shared, this.reserved);
                        *this.step = HedgeStep::Off;
                        continue;
                    };
                    this.replay
                        .mark_attempt(&mut request, *this.attempt + *this.hedges_sent);
                    let avoid = this.plan.avoid;
                    let (future, bit) = within(this.plan.deadline, || {
                        call_avoiding(avoid, || service.call(request))
                    });
                    this.plan.avoid |= bit;
                    *this.reserved = None;
                    *this.hedges_sent += 1;
                    shared.hedges_sent.fetch_add(1, Ordering::Relaxed);
                    shared.metrics.hedges_sent.increment(1);
                    tracing::debug!(
                        name = %shared.name,
                        attempt = *this.attempt,
                        hedge = *this.hedges_sent,
                        in_flight = this.race.len() + 1,
                        "sending a hedge"
                    );
                    let limit = attempt_limit(this.plan.attempt_timeout, this.plan.deadline);
                    let sent_at = this.plan.sent_at.map(|_| Instant::now());
                    let max = this.plan.hedge.max_hedged as usize;
                    this.race.push(future, limit, sent_at, max);
                    *this.step = if *this.hedges_sent < this.plan.hedge.max_hedged {
                        HedgeStep::Idle
                    } else {
                        HedgeStep::Off
                    };
                    return Poll::Ready(None);
                }
            }
        }
    }

    /// Whether an attempt in flight still holds what the request's copies share (its body,
    /// in a slow upload): a hedge sent now would fail with `BodyInUse`, so it waits until
    /// the body has been read, as Envoy's hedges replay a body it has buffered.
    fn body_in_use(this: &mut AttemptsProj<'_, S, Req, C, R, H>) -> bool {
        (Self::primary_in_flight(this) || !this.race.is_empty())
            && this
                .template
                .as_ref()
                .is_some_and(|t| !this.replay.can_hedge(t))
    }

    /// Whether a hedge may go now: hedges left, time left, a replayable request that no
    /// attempt is still reading, and the budget's grant (kept in `reserved` until the
    /// hedge is sent).
    fn may_hedge(this: &mut AttemptsProj<'_, S, Req, C, R, H>) -> bool {
        let shared: &Shared = &this.stage.handle.shared;
        if *this.hedges_sent >= this.plan.hedge.max_hedged
            || this.plan.deadline.is_some_and(|d| d.is_expired())
            || !this
                .template
                .as_ref()
                .is_some_and(|t| this.replay.can_replay(t) && this.replay.can_hedge(t))
        {
            return false;
        }
        let budget = &shared.budget;
        if !budget.is_enabled() {
            return true;
        }
        let epoch = budget.epoch_at(Instant::now());
        match budget.take_at(epoch) {
            Some(cost) => {
                *this.reserved = Some((epoch, cost));
                true
            }
            None => {
                shared.hedges_no_budget.fetch_add(1, Ordering::Relaxed);
                shared.metrics.hedges_no_budget.increment(1);
                tracing::debug!(name = %shared.name, "hedge refused: the retry budget is empty");
                false
            }
        }
    }
}
