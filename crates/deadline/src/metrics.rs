//! The deadline stage's metric handles, registered once per layer.

use metrics::Counter;
use tower_prism_core::metrics::deadline::EXPIRED_TOTAL;
use tower_prism_core::metrics::{LABEL_NAME, LABEL_REASON};

use crate::error::ExpiryReason;

/// Metric handles, registered once when the layer is built.
#[derive(Debug)]
pub(crate) struct Metrics {
    expired_policy: Counter,
    expired_request: Counter,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        let expired = |reason: ExpiryReason| metrics::counter!(EXPIRED_TOTAL, LABEL_NAME => name.to_owned(), LABEL_REASON => reason.as_label());
        Metrics {
            expired_policy: expired(ExpiryReason::Policy),
            expired_request: expired(ExpiryReason::Request),
        }
    }

    /// The counter of calls that expired for `reason`.
    pub(crate) fn expired(&self, reason: ExpiryReason) -> &Counter {
        match reason {
            ExpiryReason::Policy => &self.expired_policy,
            ExpiryReason::Request => &self.expired_request,
        }
    }
}
