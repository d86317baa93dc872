//! The retry decision: what to do after an attempt, as a pure function of what the call
//! knows (in the manner of tower's `retry::Policy`). The response future gathers the facts
//! and carries the decision out; nothing here polls, sleeps or reads a clock.

use std::time::Duration;

use tower_prism_core::Outcome;

use crate::settings::Settings;

/// What the call does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Hand the attempt's result back as it is: retrying cannot change it.
    Return(Done),
    /// Send another attempt after `delay`.
    RetryAfter(Duration),
    /// A retryable failure that is not retried: hand it back, for this reason.
    GiveUp(GiveUp),
}

/// Why a result is returned without a retry being considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    Success,
    Fatal,
    NotRetryable,
}

/// Why a retryable failure was not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// `max_attempts` reached.
    MaxAttempts,
    /// The request cannot be copied for another attempt.
    NotReplayable,
    /// The next retry would start after `max_elapsed`.
    Deadline,
    /// The next retry (its backoff included) cannot end before the caller's deadline
    /// ([`RequestDeadline`](tower_prism_core::RequestDeadline)); counted as `deadline`.
    CallerDeadline,
    /// The retry budget is empty.
    Budget,
    /// A retry-after hint over `max_retry_after`, or past `max_elapsed`.
    RetryAfter,
}

impl GiveUp {
    /// The `reason` label in metrics and events.
    pub fn label(self) -> &'static str {
        match self {
            GiveUp::MaxAttempts => "max_attempts",
            GiveUp::NotReplayable => "not_replayable",
            GiveUp::Deadline | GiveUp::CallerDeadline => "deadline",
            GiveUp::Budget => "budget",
            GiveUp::RetryAfter => "retry_after",
        }
    }
}

/// What a call knows after a retryable failure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failed {
    /// The settings in force now.
    pub settings: Settings,
    /// Attempts made so far (1 after the first).
    pub attempt: u32,
    /// The call's `max_attempts` (fixed when the call started).
    pub max_attempts: u32,
    /// The next retry's place in the backoff schedule (1: the first): `attempt`, unless
    /// a hint was waited out, after which the schedule starts again.
    pub retry: u32,
    /// Whether the request can be copied for another attempt (only read when attempts
    /// remain).
    pub replayable: bool,
    /// The wait before the previous retry (zero before the first).
    pub previous_delay: Duration,
    /// A uniformly random word for the backoff's jitter.
    pub random: u64,
    /// The failure's retry-after hint (a header, an error's hint), if any.
    pub hint: Option<Duration>,
    /// Time since the call began, when `max_elapsed` is set.
    pub elapsed: Option<Duration>,
    /// Time left before the caller's deadline, when a deadline stage above set one.
    pub remaining: Option<Duration>,
}

/// Decides what follows an attempt. `failed` is asked only for a retryable failure, and
/// `budget` (take one retry from the budget; `false` when it is empty) only when every
/// other check allows a retry, so that a retry refused for another reason costs nothing.
pub(crate) fn decide(
    outcome: Outcome,
    failed: impl FnOnce() -> Failed,
    budget: impl FnOnce() -> bool,
) -> Decision {
    match outcome {
        Outcome::Success => return Decision::Return(Done::Success),
        Outcome::Fatal => return Decision::Return(Done::Fatal),
        Outcome::Failure { retryable: false } => return Decision::Return(Done::NotRetryable),
        Outcome::Failure { retryable: true } => {}
    }
    let f = failed();
    let s = &f.settings;
    if f.attempt >= f.max_attempts {
        return Decision::GiveUp(GiveUp::MaxAttempts);
    }
    if !f.replayable {
        return Decision::GiveUp(GiveUp::NotReplayable);
    }
    let mut delay = s.backoff.delay(f.retry, f.previous_delay, f.random);
    // A hint is waited out only up to `max_retry_after`: an upstream (or a stage below)
    // asking for longer gets its answer passed back at once, never a caller held for as
    // long as a header says.
    let hint = f.hint.filter(|_| s.honor_retry_after);
    if let Some(wait) = hint {
        if wait > s.max_retry_after {
            return Decision::GiveUp(GiveUp::RetryAfter);
        }
        delay = delay.max(wait);
    }
    if let (Some(max), Some(elapsed)) = (s.max_elapsed, f.elapsed) {
        if elapsed.saturating_add(delay) > max {
            // A hint past the deadline is the upstream's answer to pass on, as above.
            return Decision::GiveUp(match hint {
                Some(wait) if elapsed.saturating_add(wait) > max => GiveUp::RetryAfter,
                _ => GiveUp::Deadline,
            });
        }
    }
    if let Some(remaining) = f.remaining {
        // `RequestDeadline::cannot_fit`: a wait that ends at the deadline leaves no time
        // for the attempt after it.
        if remaining <= delay {
            return Decision::GiveUp(match hint {
                Some(wait) if remaining <= wait => GiveUp::RetryAfter,
                _ => GiveUp::CallerDeadline,
            });
        }
    }
    if !budget() {
        return Decision::GiveUp(GiveUp::Budget);
    }
    Decision::RetryAfter(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;
    use crate::config::RetryConfig;

    const MS: Duration = Duration::from_millis(1);

    fn failed() -> Failed {
        let config = RetryConfig {
            backoff: Backoff::fixed(MS * 10),
            ..RetryConfig::default()
        };
        Failed {
            settings: Settings::from_config(&config),
            attempt: 1,
            max_attempts: 3,
            retry: 1,
            replayable: true,
            previous_delay: Duration::ZERO,
            random: 0,
            hint: None,
            elapsed: None,
            remaining: None,
        }
    }

    const RETRYABLE: Outcome = Outcome::Failure { retryable: true };

    fn with(change: impl FnOnce(&mut Failed)) -> Decision {
        let mut f = failed();
        change(&mut f);
        decide(RETRYABLE, || f, || true)
    }

    #[test]
    fn only_a_retryable_failure_is_considered() {
        let unasked = || -> Failed { panic!("facts asked for a final outcome") };
        let no_budget = || -> bool { panic!("budget taken for a final outcome") };
        assert_eq!(
            decide(Outcome::Success, unasked, no_budget),
            Decision::Return(Done::Success)
        );
        assert_eq!(
            decide(Outcome::Fatal, unasked, no_budget),
            Decision::Return(Done::Fatal)
        );
        assert_eq!(
            decide(Outcome::Failure { retryable: false }, unasked, no_budget),
            Decision::Return(Done::NotRetryable)
        );
        assert_eq!(with(|_| {}), Decision::RetryAfter(MS * 10));
    }

    #[test]
    fn attempts_and_replay_come_first_and_cost_no_budget() {
        let refuse = || -> bool { panic!("budget taken for a call that gives up anyway") };
        let mut f = failed();
        f.attempt = 3;
        assert_eq!(
            decide(RETRYABLE, || f, refuse),
            Decision::GiveUp(GiveUp::MaxAttempts)
        );
        f.attempt = 1;
        f.replayable = false;
        assert_eq!(
            decide(RETRYABLE, || f, refuse),
            Decision::GiveUp(GiveUp::NotReplayable)
        );
    }

    #[test]
    fn an_empty_budget_gives_up() {
        assert_eq!(
            decide(RETRYABLE, failed, || false),
            Decision::GiveUp(GiveUp::Budget)
        );
    }

    #[test]
    fn a_hint_lengthens_the_wait_up_to_max_retry_after() {
        assert_eq!(
            with(|f| f.hint = Some(MS * 500)),
            Decision::RetryAfter(MS * 500)
        );
        assert_eq!(
            with(|f| f.hint = Some(MS)),
            Decision::RetryAfter(MS * 10),
            "never shorter than the backoff"
        );
        assert_eq!(
            with(|f| f.hint = Some(Duration::from_secs(31))),
            Decision::GiveUp(GiveUp::RetryAfter)
        );
        assert_eq!(
            with(|f| {
                f.hint = Some(Duration::from_secs(31));
                f.settings.honor_retry_after = false;
            }),
            Decision::RetryAfter(MS * 10),
            "ignored when not honoured"
        );
    }

    #[test]
    fn the_deadline_counts_the_wait() {
        let deadline = |f: &mut Failed, elapsed: Duration| {
            f.settings.max_elapsed = Some(MS * 100);
            f.elapsed = Some(elapsed);
        };
        assert_eq!(
            with(|f| deadline(f, MS * 90)),
            Decision::RetryAfter(MS * 10)
        );
        assert_eq!(
            with(|f| deadline(f, MS * 91)),
            Decision::GiveUp(GiveUp::Deadline)
        );
        // a hint that ends past the deadline is passed on as the upstream's answer
        assert_eq!(
            with(|f| {
                deadline(f, MS * 50);
                f.hint = Some(MS * 60);
            }),
            Decision::GiveUp(GiveUp::RetryAfter)
        );
    }

    #[test]
    fn the_callers_deadline_cuts_waits_that_cannot_fit() {
        assert_eq!(
            with(|f| f.remaining = Some(MS * 11)),
            Decision::RetryAfter(MS * 10)
        );
        assert_eq!(
            with(|f| f.remaining = Some(MS * 10)),
            Decision::GiveUp(GiveUp::CallerDeadline),
            "a backoff ending at the deadline leaves no time to try"
        );
        assert_eq!(
            with(|f| f.remaining = Some(Duration::ZERO)),
            Decision::GiveUp(GiveUp::CallerDeadline)
        );
        assert_eq!(
            with(|f| {
                f.remaining = Some(MS * 100);
                f.hint = Some(MS * 200);
            }),
            Decision::GiveUp(GiveUp::RetryAfter),
            "a hint past the deadline is the upstream's answer to pass on"
        );
        assert_eq!(GiveUp::CallerDeadline.label(), "deadline");
    }

    #[test]
    fn jitter_and_previous_delay_reach_the_backoff() {
        let decorrelated = |f: &mut Failed| {
            f.settings.backoff = Backoff::exponential(MS * 10, MS * 1000)
                .jitter(crate::backoff::Jitter::Decorrelated);
            f.previous_delay = MS * 100;
            f.random = u64::MAX;
        };
        assert_eq!(with(decorrelated), Decision::RetryAfter(MS * 300));
    }
}
