//! An endpoint is an outlier only against the others.
//!
//! The outlier rules look at one endpoint; whether it is an outlier depends on the rest.
//! When every endpoint fails alike, one of them tripping a rule says nothing about it:
//! - in a brownout (every endpoint fails a share of its calls at random), five failures in
//!   a row fall on some endpoint every few seconds at a few hundred calls a second;
//!   ejecting it for 30 s takes a third of the capacity away from an upstream already
//!   short of it;
//! - in a shared outage (every endpoint fails every call), the first endpoint to trip
//!   would stay out for its ejection time after the upstream is back, and the others would
//!   carry its share.
//!
//! So [`Peers`] (one per balancer) keeps what the rules compare with: every endpoint, and
//! when the latest-starting successful call started. [`fails_like_its_peers`] keeps an
//! endpoint failing a minority of its calls, not much more often than the others, from
//! being ejected; [`Review`] (one per endpoint) ends an ejection early when the others turn
//! out to fail too (the rules cannot tell at the moment they trip: at a brownout's start
//! the others have not failed yet); and an ejection made while nothing succeeded anywhere
//! is provisional (see `Outlier::mark_provisional`), ended by the first success elsewhere.
//! All of it runs only when a rule trips or while an endpoint is ejected, except one
//! relaxed load per success.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

use tower_prism_core::internal::lock;

use crate::endpoint::EndpointState;

/// The share of their calls the other endpoints must fail after an ejection for it to be
/// ended as not this endpoint's fault.
const WIDESPREAD_FAILURES: f64 = 0.2;
/// The calls to the other endpoints after an ejection before it is judged.
const WIDESPREAD_EVIDENCE: u64 = 20;
/// How often (ms) an ejected endpoint's ejection is judged against the others.
const REVIEW_EVERY_MS: u64 = 10;

/// What the outlier rules of one balancer compare an endpoint with.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    /// When (ms on the balancer's clock, plus one; zero: never) the latest-starting
    /// successful call started, on any endpoint.
    last_success_started_ms: AtomicU64,
    /// Every endpoint of the balancer (read only when a rule trips or an ejection is
    /// reviewed).
    all: Mutex<Vec<Weak<EndpointState>>>,
}

impl Peers {
    /// Replaces the endpoints compared with.
    pub(crate) fn set(&self, endpoints: impl Iterator<Item = Weak<EndpointState>>) {
        *lock(&self.all) = endpoints.collect();
    }

    /// Notes a success of a call started at `started_ms`. The shared word is written only
    /// when the time moves on (at most once per millisecond), so successes mostly read it.
    pub(crate) fn note_success(&self, started_ms: u64) {
        let value = started_ms.saturating_add(1);
        if self.last_success_started_ms.load(Ordering::Relaxed) < value {
            self.last_success_started_ms
                .fetch_max(value, Ordering::Relaxed);
        }
    }

    /// Whether a call started at or after `since_ms` has succeeded on any endpoint. None
    /// has since an endpoint began failing: every endpoint is failing alike. Successes of
    /// calls started earlier do not count: at an outage's start they are still completing
    /// on the endpoints that are now failing.
    pub(crate) fn succeeded_since(&self, since_ms: u64) -> bool {
        self.last_success_started_ms.load(Ordering::Relaxed) > since_ms
    }

    /// Whether an endpoint in rotation other than `me` failed at or after `since_ms`.
    pub(crate) fn others_failed_since(&self, me: &EndpointState, since_ms: u64) -> bool {
        let mut failed = false;
        self.for_each_other(me, |p| failed |= p.outlier.failed_since(since_ms));
        failed
    }

    /// Calls `f` with every endpoint in rotation but `me` (under the list's lock).
    fn for_each_other(&self, me: &EndpointState, mut f: impl FnMut(&EndpointState)) {
        let all = lock(&self.all);
        for p in all.iter().filter_map(Weak::upgrade) {
            if !std::ptr::eq(&*p, me)
                && !p.outlier.is_removed()
                && p.outlier.ejected_until().is_none()
            {
                f(&p);
            }
        }
    }

    /// Sums two counts over every endpoint in rotation but `me`.
    fn sum_over_others(
        &self,
        me: &EndpointState,
        counts: impl Fn(&EndpointState) -> (u64, u64),
    ) -> (u64, u64) {
        let (mut a, mut b) = (0, 0);
        self.for_each_other(me, |p| {
            let (pa, pb) = counts(p);
            a += pa;
            b += pb;
        });
        (a, b)
    }

    /// The other endpoints' failures and requests so far (monotonic totals).
    fn totals_of_others(&self, me: &EndpointState) -> (u64, u64) {
        self.sum_over_others(me, |p| {
            (
                p.failures.load(Ordering::Relaxed),
                p.requests.load(Ordering::Relaxed),
            )
        })
    }
}

/// Whether `me`, having tripped a rule, fails only a minority of its calls (in its current
/// window) and at most about twice as often as the others: then the streak or the low
/// success rate is chance, and it is not ejected.
pub(crate) fn fails_like_its_peers(peers: &Peers, me: &EndpointState) -> bool {
    let (failures, calls) = me.outlier.window_counts();
    if calls == 0 || failures * 2 >= calls {
        return false;
    }
    let (peer_failures, peer_calls) = peers.sum_over_others(me, |p| p.outlier.window_counts());
    peer_calls > 0 && 2 * peer_failures * calls >= failures * peer_calls
}

/// Envoy's statistical success-rate rule, as configured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StdevRule {
    /// Standard deviations below the mean that eject.
    pub(crate) factor: f64,
    /// Endpoints with enough calls (`me` included) for the rule to apply.
    pub(crate) minimum_hosts: u32,
    /// Calls in an interval for an endpoint to count.
    pub(crate) request_volume: u64,
}

/// Whether `me`, whose interval just ended with `ended` (failures, calls), is a
/// success-rate outlier by Envoy's statistical rule: its success rate is below the mean
/// less `factor` standard deviations of the success rates of the endpoints in rotation
/// with at least `request_volume` calls in their latest interval (each endpoint's ends
/// when its own does, so the others' are those ended within the last two intervals), when
/// at least `minimum_hosts` endpoints count. Runs once per endpoint and interval.
pub(crate) fn below_the_others(
    peers: &Peers,
    me: &EndpointState,
    ended: (u64, u64),
    now_ms: u64,
    interval_ms: u64,
    rule: StdevRule,
) -> bool {
    let rate = |(failures, calls): (u64, u64)| (calls - failures.min(calls)) as f64 / calls as f64;
    if ended.1 < rule.request_volume {
        return false;
    }
    let since = now_ms.saturating_sub(interval_ms.saturating_mul(2));
    let mine = rate(ended);
    // Mean and variance in one pass (Welford), allocating nothing.
    let (mut n, mut mean, mut squares) = (1.0_f64, mine, 0.0_f64);
    peers.for_each_other(me, |p| {
        let Some(counts) = p.outlier.finished_since(since) else {
            return;
        };
        if counts.1 < rule.request_volume {
            return;
        }
        let r = rate(counts);
        n += 1.0;
        let delta = r - mean;
        mean += delta / n;
        squares += delta * (r - mean);
    });
    if n < f64::from(rule.minimum_hosts) {
        return false;
    }
    mine < mean - rule.factor * (squares / n).sqrt()
}

/// One endpoint's ejection, judged against the others after the fact.
#[derive(Debug, Default)]
pub(crate) struct Review {
    /// The other endpoints' failure and request totals when this one was ejected.
    failures_at_ejection: AtomicU64,
    requests_at_ejection: AtomicU64,
    /// When (ms) the ejection may next be judged.
    next_ms: AtomicU64,
}

impl Review {
    /// Starts reviewing `me`'s ejection at `now_ms`.
    pub(crate) fn start(&self, peers: &Peers, me: &EndpointState, now_ms: u64) {
        let (failures, requests) = peers.totals_of_others(me);
        self.failures_at_ejection.store(failures, Ordering::Relaxed);
        self.requests_at_ejection.store(requests, Ordering::Relaxed);
        self.next_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Whether, since `me` was ejected, the endpoints still in rotation have failed often
    /// too (at least [`WIDESPREAD_FAILURES`] of at least [`WIDESPREAD_EVIDENCE`] calls)
    /// but not always (an outage, which [`Peers::succeeded_since`] ends). Judged at most
    /// every [`REVIEW_EVERY_MS`].
    pub(crate) fn failures_are_widespread(
        &self,
        peers: &Peers,
        me: &EndpointState,
        now_ms: u64,
    ) -> bool {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms < next
            || self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + REVIEW_EVERY_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return false;
        }
        let (failures, requests) = peers.totals_of_others(me);
        let failures = failures.saturating_sub(self.failures_at_ejection.load(Ordering::Relaxed));
        let requests = requests.saturating_sub(self.requests_at_ejection.load(Ordering::Relaxed));
        requests >= WIDESPREAD_EVIDENCE
            && failures < requests
            && failures as f64 >= WIDESPREAD_FAILURES * requests as f64
    }
}
