//! The rate limiter's metric handles, registered once per limiter.

use metrics::{Counter, Gauge, Histogram};
use tower_prism_core::metrics::{ratelimit as names, LABEL_NAME, LABEL_REASON};

use crate::bucket::TokensLeft;
use crate::error::Error;

/// The metric handles of one rate limiter, labelled with its name.
pub(super) struct Metrics {
    pub(super) admitted: Counter,
    pub(super) rejected_rate: Counter,
    pub(super) rejected_queue_full: Counter,
    pub(super) rejected_shed: Counter,
    pub(super) rejected_timeout: Counter,
    pub(super) rejected_weight: Counter,
    pub(super) queued: Counter,
    pub(super) queue_wait: Histogram,
    pub(super) queue_depth: Gauge,
    pub(super) tokens: Gauge,
    pub(super) rate: Gauge,
    pub(super) keys: Gauge,
}

impl Metrics {
    pub(super) fn new(name: &str) -> Self {
        let name = name.to_owned();
        let rejected = |reason: &'static str| metrics::counter!(names::REJECTED_TOTAL, LABEL_NAME => name.clone(), LABEL_REASON => reason);
        Metrics {
            admitted: metrics::counter!(names::ADMITTED_TOTAL, LABEL_NAME => name.clone()),
            rejected_rate: rejected("rate"),
            rejected_queue_full: rejected("queue_full"),
            rejected_shed: rejected("shed"),
            rejected_timeout: rejected("timeout"),
            rejected_weight: rejected("weight"),
            queued: metrics::counter!(names::QUEUED_TOTAL, LABEL_NAME => name.clone()),
            queue_wait: metrics::histogram!(names::QUEUE_WAIT_SECONDS, LABEL_NAME => name.clone()),
            queue_depth: metrics::gauge!(names::QUEUE_DEPTH, LABEL_NAME => name.clone()),
            tokens: metrics::gauge!(names::TOKENS_AVAILABLE, LABEL_NAME => name.clone()),
            rate: metrics::gauge!(names::RATE_PER_SECOND, LABEL_NAME => name.clone()),
            keys: metrics::gauge!(names::KEYS, LABEL_NAME => name),
        }
    }

    pub(super) fn rejected(&self, error: &Error) {
        match error {
            Error::RateLimited { .. } => &self.rejected_rate,
            Error::QueueFull { .. } => &self.rejected_queue_full,
            Error::Shed { .. } => &self.rejected_shed,
            Error::QueueTimeout { .. } => &self.rejected_timeout,
            Error::WeightExceedsBurst { .. } => &self.rejected_weight,
            // The other limiters' rejections: never made here.
            _ => return,
        }
        .increment(1);
    }
}

/// The tokens gauge reads what an admission left only when a recorder takes it: without
/// one, `Gauge::set` never converts its value, so the admit path skips the division.
impl metrics::IntoF64 for TokensLeft {
    fn into_f64(self) -> f64 {
        self.get() as f64
    }
}
