//! The fault stage's metric handles, registered once per layer.

use metrics::Counter;
use tower_prism_core::metrics::fault as m;
use tower_prism_core::metrics::{LABEL_NAME, LABEL_REASON};

/// `prism_fault_injected_total{name, reason}`, one handle per reason.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub error: Counter,
    pub abort: Counter,
    pub status: Counter,
    pub latency: Counter,
}

impl Metrics {
    pub fn new(name: &str) -> Self {
        let injected = |reason: &'static str| metrics::counter!(m::INJECTED_TOTAL, LABEL_NAME => name.to_owned(), LABEL_REASON => reason);
        Metrics {
            error: injected("error"),
            abort: injected("abort"),
            status: injected("status"),
            latency: injected("latency"),
        }
    }
}
