//! The DNS discovery's metric handles, registered once when it is spawned.

use metrics::{counter, gauge, Counter, Gauge};
use tower_prism_core::metrics::balance::{DNS_ADDRESSES, DNS_RESOLUTIONS_TOTAL};
use tower_prism_core::metrics::{LABEL_NAME, LABEL_RESULT};

/// One counter per result of a resolution, and the addresses held.
pub(crate) struct DnsMetrics {
    pub(crate) ok: Counter,
    pub(crate) error: Counter,
    pub(crate) timeout: Counter,
    pub(crate) empty: Counter,
    pub(crate) panic: Counter,
    pub(crate) addresses: Gauge,
}

impl DnsMetrics {
    pub(crate) fn new(name: &str) -> Self {
        let result = |result: &'static str| counter!(DNS_RESOLUTIONS_TOTAL, LABEL_NAME => name.to_owned(), LABEL_RESULT => result);
        DnsMetrics {
            ok: result("ok"),
            error: result("error"),
            timeout: result("timeout"),
            empty: result("empty"),
            panic: result("panic"),
            addresses: gauge!(DNS_ADDRESSES, LABEL_NAME => name.to_owned()),
        }
    }
}
