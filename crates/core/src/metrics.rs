//! Metric names, label names and their descriptions, for every component.
//!
//! Names follow `prism_<component>_<what>` with Prometheus suffixes (`_total`, `_seconds`).
//! Every metric carries the label [`LABEL_NAME`] (the policy name) plus a small bounded set
//! ([`LABEL_OUTCOME`], [`LABEL_STATE`], [`LABEL_ENDPOINT`], ...). Call [`describe`] once after
//! installing a recorder to register units and help texts.
//!
//! Components register their handles (`metrics::counter!(...)`) once, when a layer is built,
//! and only call `increment`/`set`/`record` on those handles on the hot path: no key is
//! built and nothing is allocated per call. A recorder installed after a layer was built
//! does not see that layer's metrics.

pub mod balance;
pub mod breaker;
pub mod config;
pub mod deadline;
pub mod fallback;
pub mod fault;
pub mod ratelimit;
pub mod retry;

/// Label: the policy name given to the layer (`.name("payments")`).
pub const LABEL_NAME: &str = "name";
/// Label: a call's classified outcome (see [`crate::Outcome::as_label`]).
pub const LABEL_OUTCOME: &str = "outcome";
/// Label: a state name (breaker state, endpoint health).
pub const LABEL_STATE: &str = "state";
/// Label: a state a transition started from.
pub const LABEL_FROM: &str = "from";
/// Label: a state a transition went to.
pub const LABEL_TO: &str = "to";
/// Label: why something was rejected, retried or given up.
pub const LABEL_REASON: &str = "reason";
/// Label: how something ended (a hedge: `sent`, `won`, `no_budget`).
pub const LABEL_RESULT: &str = "result";
/// Label: an endpoint's metrics slot, a small number taken when it joins the balancer and
/// reused after it leaves, so per-endpoint series stay bounded under churn (the balancer's
/// `snapshot()` and its log events tell which address holds which slot).
pub const LABEL_ENDPOINT: &str = "endpoint";

/// Registers the unit and description of every tower-prism metric with the installed
/// recorder. Call it once, after installing the recorder.
pub fn describe() {
    breaker::describe();
    config::describe();
    ratelimit::describe();
    retry::describe();
    balance::describe();
    deadline::describe();
    fallback::describe();
    fault::describe();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        let all = [
            breaker::ALL,
            config::ALL,
            ratelimit::ALL,
            retry::ALL,
            balance::ALL,
            deadline::ALL,
            fallback::ALL,
            fault::ALL,
        ];
        let components = [
            "breaker",
            "config",
            "ratelimit",
            "retry",
            "balance",
            "deadline",
            "fallback",
            "fault",
        ];
        let mut seen = std::collections::HashSet::new();
        for (component, names) in components.iter().zip(all) {
            assert!(!names.is_empty());
            for name in names {
                assert!(name.starts_with(&format!("prism_{component}_")), "{name}");
                assert!(seen.insert(*name), "{name} is defined twice");
            }
        }
        describe(); // with no recorder installed this is a no-op, and must not panic
    }
}
