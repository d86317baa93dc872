//! The breaker's metric handles, registered once per breaker so the hot path only
//! increments them.

use metrics::{Counter, Gauge, Histogram};
use tower_prism_core::metrics::{breaker as m, LABEL_FROM, LABEL_NAME, LABEL_OUTCOME, LABEL_TO};
use tower_prism_core::Outcome;

use super::State;

/// Metric handles of one breaker (the `name` label is the policy name).
pub(crate) struct Metrics {
    name: String,
    calls: [Counter; 4],
    pub(crate) rejected: Counter,
    pub(crate) state: Gauge,
    pub(crate) failure_rate: Gauge,
    pub(crate) slow_call_rate: Gauge,
    pub(crate) duration: Histogram,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        let calls = [
            Outcome::Success,
            Outcome::RETRYABLE,
            Outcome::NOT_RETRYABLE,
            Outcome::Fatal,
        ]
        .map(|o| {
            metrics::counter!(m::CALLS_TOTAL, LABEL_NAME => name.to_owned(), LABEL_OUTCOME => o.as_label())
        });
        Metrics {
            name: name.to_owned(),
            calls,
            rejected: metrics::counter!(m::REJECTED_TOTAL, LABEL_NAME => name.to_owned()),
            state: metrics::gauge!(m::STATE, LABEL_NAME => name.to_owned()),
            failure_rate: metrics::gauge!(m::FAILURE_RATE, LABEL_NAME => name.to_owned()),
            slow_call_rate: metrics::gauge!(m::SLOW_CALL_RATE, LABEL_NAME => name.to_owned()),
            duration: metrics::histogram!(m::CALL_DURATION_SECONDS, LABEL_NAME => name.to_owned()),
        }
    }

    /// The calls counter of `outcome`.
    pub(crate) fn calls(&self, outcome: Outcome) -> &Counter {
        &self.calls[match outcome {
            Outcome::Success => 0,
            Outcome::Failure { retryable: true } => 1,
            Outcome::Failure { retryable: false } => 2,
            Outcome::Fatal => 3,
        }]
    }

    /// Counts a transition (cold path: the counter is looked up each time).
    pub(crate) fn transition(&self, from: State, to: State) {
        self.state.set(f64::from(to.as_number()));
        metrics::counter!(
            m::TRANSITIONS_TOTAL,
            LABEL_NAME => self.name.clone(),
            LABEL_FROM => from.as_label(),
            LABEL_TO => to.as_label()
        )
        .increment(1);
    }
}
