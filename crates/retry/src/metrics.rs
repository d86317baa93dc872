//! The retry stage's metric handles, registered once per layer.

use metrics::{Counter, Histogram};
use tower_prism_core::metrics::retry as m;
use tower_prism_core::metrics::{LABEL_NAME, LABEL_REASON, LABEL_RESULT};

use crate::decide::GiveUp;

/// Metric handles, registered once when the layer is built.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub calls_successful_without_retry: Counter,
    pub calls_successful_with_retry: Counter,
    pub calls_failed_without_retry: Counter,
    pub calls_failed_with_retry: Counter,
    pub retry_error: Counter,
    pub retry_status: Counter,
    pub retry_timeout: Counter,
    pub budget_exhausted: Counter,
    pub gave_up_max_attempts: Counter,
    pub gave_up_deadline: Counter,
    pub gave_up_budget: Counter,
    pub gave_up_not_retryable: Counter,
    pub gave_up_fatal: Counter,
    pub gave_up_not_replayable: Counter,
    pub gave_up_retry_after: Counter,
    pub backoff: Histogram,
    pub hedges_sent: Counter,
    pub hedges_won: Counter,
    pub hedges_no_budget: Counter,
    pub cancelled_attempts: Counter,
}

impl Metrics {
    pub fn new(name: &str) -> Self {
        let name = name.to_string();
        let retries = |reason: &'static str| metrics::counter!(m::RETRIES_TOTAL, LABEL_NAME => name.clone(), LABEL_REASON => reason);
        let gave_up = |reason: &'static str| metrics::counter!(m::GAVE_UP_TOTAL, LABEL_NAME => name.clone(), LABEL_REASON => reason);
        // core names no constant for this label; `result` is the one its docs give
        let hedges = |result: &'static str| metrics::counter!(m::HEDGES_TOTAL, LABEL_NAME => name.clone(), LABEL_RESULT => result);
        let calls = |result: &'static str| metrics::counter!(m::CALLS_TOTAL, LABEL_NAME => name.clone(), LABEL_RESULT => result);
        Metrics {
            calls_successful_without_retry: calls("successful_without_retry"),
            calls_successful_with_retry: calls("successful_with_retry"),
            calls_failed_without_retry: calls("failed_without_retry"),
            calls_failed_with_retry: calls("failed_with_retry"),
            retry_error: retries("error"),
            retry_status: retries("status"),
            retry_timeout: retries("timeout"),
            budget_exhausted: metrics::counter!(m::BUDGET_EXHAUSTED_TOTAL, LABEL_NAME => name.clone()),
            gave_up_max_attempts: gave_up(GiveUp::MaxAttempts.label()),
            gave_up_deadline: gave_up(GiveUp::Deadline.label()),
            gave_up_budget: gave_up(GiveUp::Budget.label()),
            gave_up_not_retryable: gave_up("not_retryable"),
            gave_up_fatal: gave_up("fatal"),
            gave_up_not_replayable: gave_up(GiveUp::NotReplayable.label()),
            gave_up_retry_after: gave_up(GiveUp::RetryAfter.label()),
            backoff: metrics::histogram!(m::BACKOFF_SECONDS, LABEL_NAME => name.clone()),
            hedges_sent: hedges("sent"),
            hedges_won: hedges("won"),
            hedges_no_budget: hedges("no_budget"),
            cancelled_attempts: metrics::counter!(m::CANCELLED_ATTEMPTS_TOTAL, LABEL_NAME => name.clone()),
        }
    }

    /// The counter of calls answered after `attempts` attempts (hedges not counted), with
    /// a success or a failure. A counter rather than a histogram of attempts: this runs
    /// on every call, and an exporter's histogram sample costs several times a counter's
    /// increment (`metrics-exporter-prometheus` reads the clock for each).
    #[inline]
    pub fn answered(&self, success: bool, attempts: u32) -> &Counter {
        match (success, attempts > 1) {
            (true, false) => &self.calls_successful_without_retry,
            (true, true) => &self.calls_successful_with_retry,
            (false, false) => &self.calls_failed_without_retry,
            (false, true) => &self.calls_failed_with_retry,
        }
    }

    /// The counter of calls that gave up for `why`.
    pub fn gave_up(&self, why: GiveUp) -> &Counter {
        match why {
            GiveUp::MaxAttempts => &self.gave_up_max_attempts,
            GiveUp::NotReplayable => &self.gave_up_not_replayable,
            GiveUp::Deadline | GiveUp::CallerDeadline => &self.gave_up_deadline,
            GiveUp::Budget => &self.gave_up_budget,
            GiveUp::RetryAfter => &self.gave_up_retry_after,
        }
    }
}
