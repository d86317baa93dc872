//! The breaker's metric handles, registered once per breaker so the hot path only
//! increments them.

use metrics::{Counter, Gauge, Histogram};
use tower_prism_core::metrics::{
    breaker as m, LABEL_FROM, LABEL_NAME, LABEL_OUTCOME, LABEL_STATE, LABEL_TO,
};
use tower_prism_core::Outcome;

use super::State;

/// Metric handles of one breaker (the `name` label is the policy name).
pub(crate) struct Metrics {
    name: String,
    calls: [Counter; 4],
    pub(crate) rejected: Counter,
    /// One 0/1 gauge per state, indexed by [`State::as_number`]: a dashboard or an alert
    /// selects a state by label instead of decoding a number, and `max_over_time` over
    /// the `open` series sees an opening that came and went between two scrapes.
    states: [Gauge; State::ALL.len()],
    pub(crate) failure_ratio: Gauge,
    pub(crate) slow_call_ratio: Gauge,
    pub(crate) duration: Histogram,
}

impl Metrics {
    /// Registers every handle of the breaker `name`, which starts closed.
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
        let states = State::ALL.map(|s| {
            let gauge = metrics::gauge!(m::STATE, LABEL_NAME => name.to_owned(), LABEL_STATE => s.as_label());
            gauge.set(if s == State::Closed { 1.0 } else { 0.0 });
            gauge
        });
        Metrics {
            name: name.to_owned(),
            calls,
            rejected: metrics::counter!(m::REJECTED_TOTAL, LABEL_NAME => name.to_owned()),
            states,
            failure_ratio: metrics::gauge!(m::FAILURE_RATIO, LABEL_NAME => name.to_owned()),
            slow_call_ratio: metrics::gauge!(m::SLOW_CALL_RATIO, LABEL_NAME => name.to_owned()),
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

    fn state(&self, state: State) -> &Gauge {
        &self.states[usize::from(state.as_number())]
    }

    /// Counts a transition (cold path, under the breaker's control lock so two transitions
    /// never interleave their gauge writes; the counter is looked up each time).
    pub(crate) fn transition(&self, from: State, to: State) {
        // The old state's series first: a forced transition to the same state ends at 1.
        self.state(from).set(0.0);
        self.state(to).set(1.0);
        metrics::counter!(
            m::TRANSITIONS_TOTAL,
            LABEL_NAME => self.name.clone(),
            LABEL_FROM => from.as_label(),
            LABEL_TO => to.as_label()
        )
        .increment(1);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn core_lists_every_state_label_in_order() {
        let labels = State::ALL.map(State::as_label);
        assert_eq!(labels.as_slice(), m::STATES);
    }
}
