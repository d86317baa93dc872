//! Passive health: outlier ejection, as Envoy does it.
//!
//! Every response feeds an endpoint's [`Outlier`] state. After `consecutive_failures` failures in
//! a row, or when the success rate over the current interval (with at least `min_requests`
//! calls) falls below the threshold, or when an interval puts it too far below the other
//! endpoints' success rates (the statistical rule, judged for every endpoint at once when
//! the first of their intervals ends, in `peers`), the endpoint is
//! ejected for `base_ejection_time` times the
//! number of times it has been ejected (capped by `max_ejection_time`). A shared budget keeps
//! the ejected endpoints at or below `max_ejection_percent` of all endpoints. An ejected endpoint
//! is restored lazily, by the first pick that finds its time is up. An ejection made while
//! every endpoint was failing (no call started since the endpoint began failing had
//! succeeded anywhere) is provisional: it also ends with the first such success, so a
//! shared outage does not keep a healthy endpoint out for its ejection time afterwards.
//! An endpoint is an outlier only against the others: one failing a minority of its calls
//! and not much more often than the rest (a brownout, where streaks come by chance) is not
//! ejected, and an ejection after which the others fail as well ends early (see `peers`).
//!
//! All state is atomics; times are milliseconds on the balancer's clock, passed in, so the
//! logic is testable (and loom-checked) without a clock.

use tower_prism_core::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// The ejection rules, as plain numbers (see [`crate::OutlierConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    /// Failures in a row that eject; 0 disables the rule.
    pub(crate) consecutive_failures: u32,
    /// Success rate (in parts per million) below which an endpoint is ejected; 0 disables
    /// the rule.
    pub(crate) success_rate_ppm: u32,
    /// Calls in the interval before the success-rate rule applies.
    pub(crate) min_requests: u32,
    /// Length of the success-rate window, in ms.
    pub(crate) interval_ms: u64,
    /// First ejection time, in ms; the n-th ejection in a row lasts n times this.
    pub(crate) base_ejection_ms: u64,
    /// Longest ejection, in ms.
    pub(crate) max_ejection_ms: u64,
    /// At most this percentage of endpoints is ejected at once.
    pub(crate) max_ejection_percent: u32,
    /// One endpoint may be ejected even when the percentage allows none.
    pub(crate) always_eject_one_host: bool,
}

/// Per-endpoint outlier state.
#[derive(Debug)]
pub struct Outlier {
    consecutive: AtomicU32,
    /// failures << 32 | calls, in the current window.
    window: AtomicU64,
    window_start_ms: AtomicU64,
    /// 0 when in rotation, else the time the ejection ends.
    ejected_until_ms: AtomicU64,
    /// Times ejected (the snapshot's count).
    ejections: AtomicU32,
    /// Envoy's ejection time multiplier as of the last ejection: one more per ejection,
    /// one less per `interval` spent in rotation since (see [`Outlier::try_eject`]).
    multiplier: AtomicU32,
    /// When the last ejection ended or ends (ms; 0: never ejected).
    last_end_ms: AtomicU64,
    removed: AtomicBool,
    /// The counts of the window that ended last (failures << 32 | calls).
    finished: AtomicU64,
    /// When (ms) that window ended, plus one (0: none yet).
    finished_at_ms: AtomicU64,
    /// When the first call of the current failure streak started (ms).
    streak_started_ms: AtomicU64,
    /// When (ms, plus one; 0: never) the endpoint last failed.
    last_failure_ms: AtomicU64,
    /// Of an ejection made while every endpoint was failing: the streak's start plus one
    /// (0: none). It ends once a call started after that succeeds elsewhere.
    provisional: AtomicU64,
}

/// What [`Outlier::record`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// A rule tripped: the caller should try [`Outlier::try_eject`].
    pub trip: bool,
    /// This record ended a window: its (failures, calls).
    pub ended: Option<(u64, u64)>,
}

/// A window's packed counts as (failures, calls).
fn unpack_window(w: u64) -> (u64, u64) {
    (w >> 32, w & 0xffff_ffff)
}

/// Calls in one window at which the window starts over, well before its 32-bit call count
/// could overflow.
const WINDOW_CALLS_LIMIT: u64 = 1 << 31;

/// How many endpoints may be ejected at once out of `endpoints`: the percentage's share,
/// rounded down, or one when `always_one` and the share rounds to none.
pub fn cap(endpoints: usize, max_ejection_percent: u32, always_one: bool) -> usize {
    let share = endpoints * max_ejection_percent as usize / 100;
    if always_one {
        share.max(1).min(endpoints)
    } else {
        share
    }
}

impl Outlier {
    /// A fresh, healthy state whose first window starts at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Outlier {
            consecutive: AtomicU32::new(0),
            window: AtomicU64::new(0),
            window_start_ms: AtomicU64::new(now_ms),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            multiplier: AtomicU32::new(0),
            last_end_ms: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            finished: AtomicU64::new(0),
            finished_at_ms: AtomicU64::new(0),
            streak_started_ms: AtomicU64::new(now_ms),
            last_failure_ms: AtomicU64::new(0),
            provisional: AtomicU64::new(0),
        }
    }

    /// Records one result: whether a rule is tripped (the caller should try
    /// [`try_eject`](Self::try_eject)), and the counts of the window this record ended, if
    /// it ended one (the statistical rule's sweep, if due, judges the endpoint on them).
    pub fn record(&self, failure: bool, now_ms: u64, s: &Settings) -> Recorded {
        let streak = if failure {
            self.last_failure_ms
                .store(now_ms.saturating_add(1), Ordering::Relaxed);
            self.consecutive
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1)
        } else {
            self.consecutive.store(0, Ordering::Relaxed);
            0
        };
        let start = self.window_start_ms.load(Ordering::Relaxed);
        let ended = if now_ms.saturating_sub(start) >= s.interval_ms {
            self.end_window(start, now_ms)
        } else {
            None
        };
        let add = (u64::from(failure) << 32) | 1;
        let w = self
            .window
            .fetch_add(add, Ordering::Relaxed)
            .wrapping_add(add);
        let (failures, calls) = (w >> 32, w & 0xffff_ffff);
        if calls >= WINDOW_CALLS_LIMIT {
            // the 32-bit call count would soon carry into the failure count: start a new
            // window (only at more than 2^31 calls in one `interval`)
            self.window.store(0, Ordering::Relaxed);
        }
        let by_streak = failure && s.consecutive_failures > 0 && streak >= s.consecutive_failures;
        let by_rate = failure
            && s.success_rate_ppm > 0
            && calls >= u64::from(s.min_requests.max(1))
            && (calls - failures) * 1_000_000 < u64::from(s.success_rate_ppm) * calls;
        Recorded {
            trip: by_streak || by_rate,
            ended,
        }
    }

    /// Ends the window that started at `start_ms`, at `now_ms`: its counts, for the one
    /// caller that ended it (the window's start is the claim, so a record and the
    /// statistical rule's sweep never both end it).
    fn end_window(&self, start_ms: u64, now_ms: u64) -> Option<(u64, u64)> {
        self.window_start_ms
            .compare_exchange(start_ms, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        let counts = self.window.swap(0, Ordering::Relaxed);
        self.finished.store(counts, Ordering::Relaxed);
        self.finished_at_ms
            .store(now_ms.saturating_add(1), Ordering::Relaxed);
        Some(unpack_window(counts))
    }

    /// For the statistical rule's sweep: ends the window at `now_ms` if it started before
    /// `cut_ms` (when the sweep was due), so every endpoint's interval ends at once, as
    /// at Envoy's sweep. Its counts (failures, calls), if this call ended it; a window
    /// that started later is already the next interval's.
    pub fn end_window_started_before(&self, cut_ms: u64, now_ms: u64) -> Option<(u64, u64)> {
        let start = self.window_start_ms.load(Ordering::Relaxed);
        if start < cut_ms {
            self.end_window(start, now_ms)
        } else {
            None
        }
    }

    /// The counts (failures, calls) of the window that ended last, if it ended at or after
    /// `since_ms`.
    pub fn finished_since(&self, since_ms: u64) -> Option<(u64, u64)> {
        let at = self.finished_at_ms.load(Ordering::Relaxed);
        (at > since_ms).then(|| unpack_window(self.finished.load(Ordering::Relaxed)))
    }

    /// Ejects the endpoint if it is not already ejected and the budget (`ejected`, shared by
    /// all endpoints, out of `endpoints`) allows. Returns the ejection time in ms.
    pub fn try_eject(
        &self,
        now_ms: u64,
        s: &Settings,
        ejected: &AtomicUsize,
        endpoints: usize,
    ) -> Option<u64> {
        if self.ejected_until_ms.load(Ordering::Acquire) != 0 || self.removed.load(Ordering::SeqCst)
        {
            return None;
        }
        let max = cap(endpoints, s.max_ejection_percent, s.always_eject_one_host);
        let mut current = ejected.load(Ordering::Acquire);
        loop {
            if current >= max {
                return None;
            }
            match ejected.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // As Envoy: the n-th ejection in a row lasts n times the base, and every `interval`
        // the endpoint spent in rotation since its last ejection (healthy at Envoy's sweep)
        // takes one off n, so an endpoint that recovered for good goes back to the base.
        let last_end = self.last_end_ms.load(Ordering::Relaxed);
        let healthy_intervals = match last_end {
            0 => 0,
            end => now_ms.saturating_sub(end) / s.interval_ms.max(1),
        };
        let n = u64::from(self.multiplier.load(Ordering::Relaxed))
            .saturating_sub(healthy_intervals)
            .saturating_add(1);
        let duration = s
            .base_ejection_ms
            .saturating_mul(n)
            .min(s.max_ejection_ms.max(s.base_ejection_ms))
            .max(1);
        let until = now_ms.saturating_add(duration).max(1);
        if self
            .ejected_until_ms
            .compare_exchange(0, until, Ordering::SeqCst, Ordering::Acquire)
            .is_err()
        {
            ejected.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        // saturating: a wrapped count would make the next ejection the shortest again
        let _ = self
            .ejections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
        self.multiplier
            .store(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
        self.last_end_ms.store(until, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        self.window.store(0, Ordering::Relaxed);
        self.window_start_ms.store(now_ms, Ordering::Relaxed);
        if self.removed.load(Ordering::SeqCst) {
            // removed while we ejected: give the slot back
            self.release(ejected);
            return None;
        }
        Some(duration)
    }

    /// The time the current ejection ends, if ejected.
    pub fn ejected_until(&self) -> Option<u64> {
        match self.ejected_until_ms.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// Restores the endpoint if its ejection is over, its failure streak cleared. `true`
    /// for the one caller that did it.
    pub fn try_restore(&self, now_ms: u64, ejected: &AtomicUsize) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Acquire);
        if until == 0 || now_ms < until {
            return false;
        }
        if self
            .ejected_until_ms
            .compare_exchange(until, 0, Ordering::SeqCst, Ordering::Acquire)
            .is_ok()
        {
            self.provisional.store(0, Ordering::Relaxed);
            // As Envoy on every uneject: failures of calls that answered while it was out
            // (in flight at the ejection, or sent in panic mode) would leave the streak one
            // failure short of ejecting it again.
            self.consecutive.store(0, Ordering::Relaxed);
            ejected.fetch_sub(1, Ordering::AcqRel);
            true
        } else {
            false
        }
    }

    /// Ends the ejection now, as its time had come (a passing health check said the
    /// endpoint is back), and clears the failure counts. `true` for the one caller that
    /// ended it.
    pub fn uneject(&self, now_ms: u64, ejected: &AtomicUsize) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Acquire);
        if until == 0
            || self
                .ejected_until_ms
                .compare_exchange(until, 0, Ordering::SeqCst, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        ejected.fetch_sub(1, Ordering::AcqRel);
        self.provisional.store(0, Ordering::Relaxed);
        // the multiplier's decay counts healthy intervals from the ejection's real end
        self.last_end_ms.store(now_ms.max(1), Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        self.window.store(0, Ordering::Relaxed);
        self.window_start_ms.store(now_ms, Ordering::Relaxed);
        true
    }

    /// Marks the endpoint removed and gives back its ejection slot, if it holds one.
    pub fn remove(&self, ejected: &AtomicUsize) {
        self.removed.store(true, Ordering::SeqCst);
        self.release(ejected);
    }

    fn release(&self, ejected: &AtomicUsize) {
        self.provisional.store(0, Ordering::Relaxed);
        if self.ejected_until_ms.swap(0, Ordering::SeqCst) != 0 {
            ejected.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether [`remove`](Self::remove) was called.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// After [`record`](Self::record) of a failure of a call started at `started_ms`:
    /// notes when the failure streak began, if this failure began it.
    pub fn note_failure_start(&self, started_ms: u64) {
        if self.consecutive.load(Ordering::Relaxed) == 1 {
            self.streak_started_ms.store(started_ms, Ordering::Relaxed);
        }
    }

    /// Whether the endpoint failed at or after `since_ms`.
    pub fn failed_since(&self, since_ms: u64) -> bool {
        self.last_failure_ms.load(Ordering::Relaxed) > since_ms
    }

    /// When the first call of the current failure streak started (ms).
    pub fn streak_started_ms(&self) -> u64 {
        self.streak_started_ms.load(Ordering::Relaxed)
    }

    /// Marks the current ejection as made during a shared failure that began at `since_ms`.
    pub fn mark_provisional(&self, since_ms: u64) {
        self.provisional
            .store(since_ms.saturating_add(1), Ordering::Relaxed);
    }

    /// Of a provisional ejection: when the shared failure began (ms).
    pub fn provisional_since(&self) -> Option<u64> {
        match self.provisional.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t - 1),
        }
    }

    /// Ends the ejection before its time (the failures were not this endpoint's), its
    /// failure streak cleared; it does not count towards the next ejection's length.
    /// `true` for the one caller that ended it.
    pub fn end_early(&self, ejected: &AtomicUsize) -> bool {
        self.provisional.store(0, Ordering::Relaxed);
        if self.ejected_until_ms.swap(0, Ordering::SeqCst) == 0 {
            return false;
        }
        // as at the end of its time (see `try_restore`)
        self.consecutive.store(0, Ordering::Relaxed);
        ejected.fetch_sub(1, Ordering::AcqRel);
        let _ = self
            .ejections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let _ = self
            .multiplier
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        true
    }

    /// Failures and calls in the current window.
    pub fn window_counts(&self) -> (u64, u64) {
        unpack_window(self.window.load(Ordering::Relaxed))
    }

    /// How many times the endpoint has been ejected.
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            consecutive_failures: 3,
            success_rate_ppm: 0,
            min_requests: 10,
            interval_ms: 10_000,
            base_ejection_ms: 1_000,
            max_ejection_ms: 2_500,
            max_ejection_percent: 50,
            always_eject_one_host: false,
        }
    }

    #[test]
    fn streak_ejects_and_time_grows_to_the_cap() {
        let s = settings();
        let budget = AtomicUsize::new(0);
        let o = Outlier::new(0);
        assert!(!o.record(true, 1, &s).trip);
        assert!(!o.record(false, 1, &s).trip, "a success breaks the streak");
        assert!(!o.record(true, 1, &s).trip);
        assert!(!o.record(true, 1, &s).trip);
        assert!(o.record(true, 1, &s).trip);
        assert_eq!(o.try_eject(1, &s, &budget, 2), Some(1_000));
        assert_eq!(o.try_eject(1, &s, &budget, 2), None, "already ejected");
        assert!(!o.try_restore(1_000, &budget));
        assert!(o.try_restore(1_001, &budget));
        assert_eq!(budget.load(Ordering::Relaxed), 0);
        for _ in 0..3 {
            o.record(true, 2_000, &s);
        }
        assert_eq!(o.try_eject(2_000, &s, &budget, 2), Some(2_000));
        assert!(o.try_restore(4_000, &budget));
        assert_eq!(o.try_eject(5_000, &s, &budget, 2), Some(2_500), "capped");
        assert_eq!(o.ejections(), 3);
    }

    /// Failures answered while the endpoint was ejected (calls in flight when it went
    /// out) do not count towards its next streak, as in Envoy, which clears the counts on
    /// every uneject: the streak went on from them, and a single failure after the
    /// ejection's end ejected it again.
    #[test]
    fn an_ended_ejection_starts_a_new_streak() {
        let s = settings();
        let budget = AtomicUsize::new(0);
        let o = Outlier::new(0);
        for _ in 0..3 {
            o.record(true, 1, &s);
        }
        assert_eq!(o.try_eject(1, &s, &budget, 2), Some(1_000));
        // two calls in flight at the ejection fail while it lasts
        assert!(!o.record(true, 500, &s).trip);
        assert!(!o.record(true, 600, &s).trip);
        assert!(o.try_restore(1_001, &budget));
        assert!(
            !o.record(true, 1_002, &s).trip,
            "one failure after the ejection"
        );
        assert!(!o.record(true, 1_003, &s).trip);
        assert!(o.record(true, 1_004, &s).trip, "a streak of its own");
        // an ejection ended early clears the streak too
        assert_eq!(o.try_eject(1_004, &s, &budget, 2), Some(2_000));
        o.record(true, 1_100, &s);
        o.record(true, 1_200, &s);
        assert!(o.end_early(&budget));
        assert!(!o.record(true, 1_300, &s).trip);
    }

    /// Envoy's multiplier: each `interval` in rotation after an ejection takes one off the
    /// next ejection's multiple of the base (it only grew, so an endpoint ejected twice in
    /// its life was ejected for twice the base a week after recovering).
    #[test]
    fn the_multiplier_goes_down_while_the_endpoint_stays_in_rotation() {
        let s = Settings {
            max_ejection_ms: 10_000,
            ..settings()
        };
        let budget = AtomicUsize::new(0);
        let o = Outlier::new(0);
        assert_eq!(o.try_eject(0, &s, &budget, 2), Some(1_000));
        assert!(o.try_restore(1_000, &budget));
        assert_eq!(
            o.try_eject(2_000, &s, &budget, 2),
            Some(2_000),
            "again, at once"
        );
        assert!(o.try_restore(4_000, &budget));
        assert_eq!(
            o.try_eject(5_000, &s, &budget, 2),
            Some(3_000),
            "third in a row"
        );
        assert!(o.try_restore(8_000, &budget));
        // two intervals (10 s each) in rotation: the multiplier 3 -> 1
        assert_eq!(o.try_eject(28_000, &s, &budget, 2), Some(2_000));
        assert!(o.try_restore(30_000, &budget));
        // a week in rotation: back to the base
        assert_eq!(
            o.try_eject(30_000 + 7 * 86_400_000, &s, &budget, 2),
            Some(1_000)
        );
        assert_eq!(o.ejections(), 5, "the count of ejections only grows");
    }

    #[test]
    fn ejection_time_arithmetic_saturates_instead_of_overflowing() {
        // the largest settings validation allows, the most ejections ever, the end of time
        let s = Settings {
            base_ejection_ms: 60 * 60 * 1000,
            max_ejection_ms: 24 * 60 * 60 * 1000,
            ..settings()
        };
        let budget = AtomicUsize::new(0);
        let o = Outlier::new(0);
        o.ejections.store(u32::MAX - 1, Ordering::Relaxed);
        o.multiplier.store(u32::MAX - 1, Ordering::Relaxed);
        let end = u64::MAX - 5;
        assert_eq!(o.try_eject(end, &s, &budget, 2), Some(s.max_ejection_ms));
        assert_eq!(o.ejected_until(), Some(u64::MAX), "saturated, not wrapped");
        assert_eq!(o.ejections(), u32::MAX);
        // the count saturates too, so the next ejection is still the longest
        o.release(&budget);
        assert_eq!(o.try_eject(1, &s, &budget, 2), Some(s.max_ejection_ms));
        assert_eq!(o.ejections(), u32::MAX);
        assert!(!o.try_restore(s.max_ejection_ms, &budget));
        assert!(o.try_restore(s.max_ejection_ms + 1, &budget));
        assert_eq!(budget.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_huge_window_starts_over_before_its_call_count_overflows() {
        let s = Settings {
            consecutive_failures: 0,
            success_rate_ppm: 500_000,
            min_requests: 10,
            ..settings()
        };
        let o = Outlier::new(0);
        // 2^31 - 1 successes already counted in this window
        o.window.store(WINDOW_CALLS_LIMIT - 1, Ordering::Relaxed);
        assert!(!o.record(false, 1, &s).trip);
        assert_eq!(o.window.load(Ordering::Relaxed), 0, "started over");
        for _ in 0..9 {
            o.record(true, 1, &s);
        }
        assert!(
            o.record(true, 1, &s).trip,
            "the new window counts from zero"
        );
    }

    #[test]
    fn success_rate_rule() {
        let s = Settings {
            consecutive_failures: 0,
            success_rate_ppm: 800_000,
            ..settings()
        };
        let o = Outlier::new(0);
        // 7 successes, 2 failures: below min_requests
        for i in 0..9 {
            assert!(!o.record(i % 4 == 3, 5, &s).trip);
        }
        // 10th call, a failure: 7/10 = 70% < 80%
        assert!(o.record(true, 5, &s).trip);
        // a new window forgets the old calls
        assert!(!o.record(true, 20_000, &s).trip);
    }

    #[test]
    fn budget_caps_ejections() {
        let s = settings();
        let budget = AtomicUsize::new(0);
        let eps: Vec<Outlier> = (0..4).map(|_| Outlier::new(0)).collect();
        let ejected = eps
            .iter()
            .filter(|o| o.try_eject(0, &s, &budget, 4).is_some())
            .count();
        assert_eq!(ejected, 2, "50% of 4");
        assert_eq!(cap(1, 50, false), 0, "never the only endpoint at 50%");
        eps[0].remove(&budget);
        eps[1].remove(&budget);
        assert_eq!(budget.load(Ordering::Relaxed), 0);
        assert_eq!(eps[2].try_eject(0, &s, &budget, 2), Some(1_000));
        assert_eq!(eps[0].try_eject(0, &s, &budget, 2), None, "removed");
    }

    #[test]
    fn always_eject_one_host_ejects_one_where_the_percentage_allows_none() {
        let mut s = settings();
        s.max_ejection_percent = 10;
        let budget = AtomicUsize::new(0);
        let eps: Vec<Outlier> = (0..5).map(|_| Outlier::new(0)).collect();
        assert_eq!(
            eps[0].try_eject(0, &s, &budget, 5),
            None,
            "10% of 5 is none"
        );
        s.always_eject_one_host = true;
        assert_eq!(eps[0].try_eject(0, &s, &budget, 5), Some(1_000));
        assert_eq!(eps[1].try_eject(0, &s, &budget, 5), None, "one, not two");
        assert_eq!(cap(1, 50, true), 1, "the only endpoint too");
        assert_eq!(cap(0, 50, true), 0);
        assert_eq!(cap(20, 10, true), 2, "the percentage where it allows more");
    }
}

#[cfg(all(test, not(loom)))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the results and timing, the ejected endpoints never exceed the cap and the
        /// shared budget always equals the number actually ejected.
        #[test]
        fn ejections_stay_within_the_cap(
            n in 1usize..8,
            percent in 0u32..=100,
            always_one in any::<bool>(),
            ops in proptest::collection::vec((0usize..8, any::<bool>(), 0u64..400), 1..200),
        ) {
            let s = Settings {
                consecutive_failures: 2,
                success_rate_ppm: 500_000,
                min_requests: 4,
                interval_ms: 1_000,
                base_ejection_ms: 300,
                max_ejection_ms: 900,
                max_ejection_percent: percent,
                always_eject_one_host: always_one,
            };
            let budget = AtomicUsize::new(0);
            let eps: Vec<Outlier> = (0..n).map(|_| Outlier::new(0)).collect();
            let mut now = 0;
            for (i, failure, dt) in ops {
                now += dt;
                let o = &eps[i % n];
                o.try_restore(now, &budget);
                if o.record(failure, now, &s).trip {
                    o.try_eject(now, &s, &budget, n);
                }
                let ejected = eps.iter().filter(|o| o.ejected_until().is_some()).count();
                prop_assert!(ejected <= cap(n, percent, always_one));
                prop_assert_eq!(ejected, budget.load(Ordering::Relaxed));
            }
        }
    }
}

#[cfg(all(loom, test))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    fn settings() -> Settings {
        Settings {
            consecutive_failures: 1,
            success_rate_ppm: 0,
            min_requests: 1,
            interval_ms: 1_000,
            base_ejection_ms: 100,
            max_ejection_ms: 1_000,
            max_ejection_percent: 50,
            always_eject_one_host: false,
        }
    }

    #[test]
    fn loom_budget_is_never_exceeded() {
        loom::model(|| {
            let budget = Arc::new(AtomicUsize::new(0));
            let a = Arc::new(Outlier::new(0));
            let b = Arc::new(Outlier::new(0));
            let t = {
                let (budget, a) = (budget.clone(), a.clone());
                thread::spawn(move || a.try_eject(0, &settings(), &budget, 2).is_some())
            };
            let mine = b.try_eject(0, &settings(), &budget, 2).is_some();
            let theirs = t.join().unwrap();
            assert!(mine ^ theirs, "exactly one of two may go at 50%");
            assert_eq!(budget.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn loom_restore_happens_once() {
        loom::model(|| {
            let budget = Arc::new(AtomicUsize::new(0));
            let a = Arc::new(Outlier::new(0));
            assert!(a.try_eject(0, &settings(), &budget, 2).is_some());
            let t = {
                let (budget, a) = (budget.clone(), a.clone());
                thread::spawn(move || a.try_restore(500, &budget))
            };
            let mine = a.try_restore(500, &budget);
            assert!(mine ^ t.join().unwrap());
            assert_eq!(budget.load(Ordering::SeqCst), 0);
        });
    }

    /// A call's record and the statistical rule's sweep both find the window due: one of
    /// them ends it, and every call is counted once, in the ended window or the next.
    #[test]
    fn loom_a_window_is_ended_once_and_loses_no_call() {
        loom::model(|| {
            let s = Settings {
                consecutive_failures: 0,
                ..settings()
            };
            let a = Arc::new(Outlier::new(0));
            a.record(true, 10, &s);
            a.record(false, 20, &s);
            let t = {
                let a = a.clone();
                thread::spawn(move || a.record(true, 1_000, &s).ended)
            };
            let swept = a.end_window_started_before(1_000, 1_000);
            let recorded = t.join().unwrap();
            let ended = match (recorded, swept) {
                (Some(ended), None) | (None, Some(ended)) => ended,
                both => panic!("ended by neither or both: {both:?}"),
            };
            let (failures, calls) = a.window_counts();
            assert_eq!(ended.1 + calls, 3, "{ended:?} then {calls}");
            assert_eq!(ended.0 + failures, 2);
            assert!(
                ended.1 >= 2,
                "the calls before the end are in the ended window"
            );
            assert_eq!(a.finished_since(1_000), Some(ended));
        });
    }

    #[test]
    fn loom_removal_racing_an_ejection_leaks_no_slot() {
        loom::model(|| {
            let budget = Arc::new(AtomicUsize::new(0));
            let a = Arc::new(Outlier::new(0));
            let t = {
                let (budget, a) = (budget.clone(), a.clone());
                thread::spawn(move || {
                    a.try_eject(0, &settings(), &budget, 2);
                })
            };
            a.remove(&budget);
            t.join().unwrap();
            assert_eq!(budget.load(Ordering::SeqCst), 0);
        });
    }
}
