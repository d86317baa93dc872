//! What a balancer looks like at one moment: plain data for health endpoints and tests.

use std::time::Duration;

use crate::config::Strategy;

/// One endpoint in a [`BalanceSnapshot`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndpointSnapshot<K> {
    /// The endpoint's key.
    pub key: K,
    /// Its metrics slot: the value of the `endpoint` label on its metric series. The lowest
    /// slot free when it joined; freed when it leaves and then reused by the next endpoint.
    pub slot: u32,
    /// Its weight (weighted round robin).
    pub weight: u32,
    /// Whether it takes requests now: not ejected and passing health checks.
    pub healthy: bool,
    /// Whether it is ejected as an outlier.
    pub ejected: bool,
    /// Whether it passes its active health checks (always true without them).
    pub passing_health_checks: bool,
    /// Requests in flight.
    pub in_flight: u64,
    /// Requests sent to it.
    pub requests: u64,
    /// Requests classified as failures.
    pub failures: u64,
    /// Times it was ejected.
    pub ejections: u32,
    /// Its peak-EWMA latency estimate (as of its last response).
    pub latency_ewma: Duration,
}

/// What a balancer looks like right now, from
/// [`BalanceHandle::snapshot`](crate::BalanceHandle::snapshot).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BalanceSnapshot<K> {
    /// The strategy in use.
    pub strategy: Strategy,
    /// Every endpoint, in the order they were added.
    pub endpoints: Vec<EndpointSnapshot<K>>,
}

impl<K> BalanceSnapshot<K> {
    /// How many endpoints take requests now.
    pub fn healthy(&self) -> usize {
        self.endpoints.iter().filter(|e| e.healthy).count()
    }
}
