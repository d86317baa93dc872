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
//!
//! Envoy's statistical rule compares every endpoint with the rest by nature: once per
//! interval, [`outliers`] ends every endpoint's interval and judges them all on one mean
//! and standard deviation, as Envoy's sweep ([`SweepGate`] lets one call run it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tower_prism_core::internal::lock;
use tower_prism_core::sync::{AtomicU64 as SyncU64, Ordering as SyncOrdering};

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
    /// Every endpoint of the balancer (read only when a rule trips, an ejection is
    /// reviewed or the statistical rule's sweep runs).
    all: Mutex<Vec<Weak<EndpointState>>>,
    /// The statistical rule's last sweep.
    pub(crate) sweeps: SweepGate,
    /// Times the statistical rule's mean and standard deviation were computed.
    #[cfg(all(test, not(loom)))]
    statistics_computed: std::sync::atomic::AtomicUsize,
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

    /// Times the statistical rule's mean and standard deviation were computed.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn statistics_computed(&self) -> usize {
        self.statistics_computed.load(Ordering::Relaxed)
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
    /// Endpoints with enough calls for the rule to apply.
    pub(crate) minimum_hosts: u32,
    /// Calls in an interval for an endpoint to count.
    pub(crate) request_volume: u64,
}

/// When the statistical rule last judged the endpoints: at most once per interval, as
/// Envoy's sweep, by the first call to end an interval once one is due.
#[derive(Debug)]
pub(crate) struct SweepGate {
    /// When (ms on the balancer's clock) the last sweep ran; 0 at the start, when the
    /// first windows started.
    last_ms: SyncU64,
}

impl Default for SweepGate {
    fn default() -> Self {
        SweepGate {
            last_ms: SyncU64::new(0),
        }
    }
}

impl SweepGate {
    /// Whether a sweep is due at `now_ms`, `interval_ms` after the last one. For the one
    /// caller that takes it, when it was due: the windows that started before then hold
    /// the interval it judges.
    pub(crate) fn begin(&self, now_ms: u64, interval_ms: u64) -> Option<u64> {
        let last = self.last_ms.load(SyncOrdering::Relaxed);
        let due = last.saturating_add(interval_ms);
        if now_ms < due {
            return None;
        }
        self.last_ms
            .compare_exchange(last, now_ms, SyncOrdering::Relaxed, SyncOrdering::Relaxed)
            .ok()
            .map(|_| due)
    }
}

/// Envoy's statistical success-rate rule, as its sweep does it: every endpoint's interval
/// ends now (`trigger`'s just ended, with `ended` (failures, calls) in it; a window that
/// started at or after `cut_ms`, when the sweep was due, ended the interval itself); the
/// mean and standard deviation of the success rates of the endpoints in rotation with at
/// least `request_volume` calls over it are computed once, if at least `minimum_hosts` of
/// them count; and the endpoints among them below the mean less `factor` deviations are
/// returned, in the balancer's order, for the caller to eject within the ejection cap.
///
/// Two walks of the endpoints under the list's lock, once per interval for the whole
/// balancer: O(n), where judging each endpoint against all the others is O(n^2), felt at
/// thousands of endpoints. It allocates only for outliers.
pub(crate) fn outliers(
    peers: &Peers,
    trigger: &EndpointState,
    ended: (u64, u64),
    now_ms: u64,
    cut_ms: u64,
    rule: StdevRule,
) -> Vec<Arc<EndpointState>> {
    let rate = |(failures, calls): (u64, u64)| (calls - failures.min(calls)) as f64 / calls as f64;
    // The endpoint's counts over the interval judged, if it counts.
    let counted = |p: &EndpointState, counts: Option<(u64, u64)>| {
        counts.filter(|c| c.1 >= rule.request_volume && p.outlier.ejected_until().is_none())
    };
    let all = lock(&peers.all);
    let live = || {
        all.iter()
            .filter_map(Weak::upgrade)
            .filter(|p| !p.outlier.is_removed())
    };
    // Mean and variance in one pass (Welford).
    let (mut n, mut mean, mut squares) = (0.0_f64, 0.0_f64, 0.0_f64);
    for p in live() {
        let counts = if std::ptr::eq(&*p, trigger) {
            Some(ended)
        } else {
            // the windows of ejected endpoints end too, as Envoy's buckets do
            let o = &p.outlier;
            o.end_window_started_before(cut_ms, now_ms)
                .or_else(|| o.finished_since(cut_ms))
        };
        if let Some(counts) = counted(&p, counts) {
            let r = rate(counts);
            n += 1.0;
            let delta = r - mean;
            mean += delta / n;
            squares += delta * (r - mean);
        }
    }
    #[cfg(all(test, not(loom)))]
    peers.statistics_computed.fetch_add(1, Ordering::Relaxed);
    if n == 0.0 || n < f64::from(rule.minimum_hosts) {
        return Vec::new();
    }
    let threshold = mean - rule.factor * (squares / n).sqrt();
    live()
        .filter(|p| {
            let counts = if std::ptr::eq(&**p, trigger) {
                Some(ended)
            } else {
                p.outlier.finished_since(cut_ms)
            };
            counted(p, counts).is_some_and(|c| rate(c) < threshold)
        })
        .collect()
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

#[cfg(all(loom, test))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two calls ending intervals at once, a sweep due: one runs it, then none is due
    /// until an interval later.
    #[test]
    fn loom_one_sweep_per_interval() {
        loom::model(|| {
            let gate = Arc::new(SweepGate::default());
            let t = {
                let gate = gate.clone();
                thread::spawn(move || gate.begin(1_005, 1_000))
            };
            let mine = gate.begin(1_005, 1_000);
            let theirs = t.join().unwrap();
            assert!(mine.is_some() ^ theirs.is_some(), "{mine:?} {theirs:?}");
            assert_eq!(
                mine.or(theirs),
                Some(1_000),
                "due an interval after the start"
            );
            assert_eq!(gate.begin(2_004, 1_000), None);
            assert_eq!(gate.begin(2_005, 1_000), Some(2_005));
        });
    }
}
