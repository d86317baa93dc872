//! Active health: the result of each probe moves an endpoint between healthy and unhealthy
//! once `healthy_threshold` probes in a row pass, or `unhealthy_threshold` in a row fail.
//!
//! Only the health-check task records probes; picks read [`HealthCheck::is_healthy`]. An
//! endpoint failing its checks counts once in the balancer's count of unhealthy endpoints
//! (which the healthy gauge subtracts), and leaving the balancer takes it out of that count:
//! the two can race (an endpoint removed while its probe's result is recorded), so being in
//! the count is a flag of its own, moved with `swap` by whichever side gets there first.

use tower_prism_core::sync::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// Per-endpoint active health state. Endpoints start healthy.
#[derive(Debug)]
pub struct HealthCheck {
    healthy: AtomicBool,
    /// Probes in a row that disagree with the current state.
    streak: AtomicU32,
    /// This endpoint is in the balancer's unhealthy count.
    counted: AtomicBool,
    /// The endpoint left the balancer: it is counted no more.
    left: AtomicBool,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            counted: AtomicBool::new(false),
            left: AtomicBool::new(false),
        }
    }
}

impl HealthCheck {
    /// Whether the endpoint passes its health checks.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Records one probe, and on a flip moves the endpoint into or out of `unhealthy`, the
    /// balancer's count. Returns `Some(new_state)` when the state flips; `None` once the
    /// endpoint has [left](Self::leave).
    pub fn record(
        &self,
        passed: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
        unhealthy: &AtomicUsize,
    ) -> Option<bool> {
        if self.left.load(Ordering::SeqCst) {
            return None;
        }
        let flipped = self.judge(passed, healthy_threshold, unhealthy_threshold)?;
        if flipped {
            self.uncount(unhealthy);
        } else {
            if !self.counted.swap(true, Ordering::SeqCst) {
                unhealthy.fetch_add(1, Ordering::SeqCst);
            }
            // `leave` ran before the swap above and found nothing to take out: take it out
            // here (one of the two sees the other, so the count never keeps a departed
            // endpoint, and the swaps never take one out twice)
            if self.left.load(Ordering::SeqCst) {
                self.uncount(unhealthy);
            }
        }
        Some(flipped)
    }

    /// The endpoint leaves the balancer: out of `unhealthy` if it is counted there, and no
    /// later probe counts it.
    pub fn leave(&self, unhealthy: &AtomicUsize) {
        self.left.store(true, Ordering::SeqCst);
        self.uncount(unhealthy);
    }

    fn uncount(&self, unhealthy: &AtomicUsize) {
        if self.counted.swap(false, Ordering::SeqCst) {
            unhealthy.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The thresholds' verdict on one more probe: `Some(new_state)` when the state flips.
    fn judge(
        &self,
        passed: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<bool> {
        let healthy = self.is_healthy();
        if passed == healthy {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = if healthy {
            unhealthy_threshold
        } else {
            healthy_threshold
        };
        if streak >= threshold.max(1) {
            self.streak.store(0, Ordering::Relaxed);
            self.healthy.store(passed, Ordering::Release);
            Some(passed)
        } else {
            None
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let count = AtomicUsize::new(0);
        let h = HealthCheck::default();
        assert!(h.is_healthy());
        assert_eq!(h.record(false, 2, 3, &count), None);
        assert_eq!(h.record(false, 2, 3, &count), None);
        assert_eq!(
            h.record(true, 2, 3, &count),
            None,
            "a pass resets the failing streak"
        );
        assert_eq!(h.record(false, 2, 3, &count), None);
        assert_eq!(h.record(false, 2, 3, &count), None);
        assert_eq!(h.record(false, 2, 3, &count), Some(false));
        assert!(!h.is_healthy());
        assert_eq!(h.record(true, 2, 3, &count), None);
        assert_eq!(h.record(true, 2, 3, &count), Some(true));
        assert!(h.is_healthy());
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_count_follows_the_state_until_the_endpoint_leaves() {
        let count = AtomicUsize::new(0);
        let h = HealthCheck::default();
        assert_eq!(h.record(false, 1, 1, &count), Some(false));
        assert_eq!(count.load(Ordering::Relaxed), 1);
        h.leave(&count);
        assert_eq!(count.load(Ordering::Relaxed), 0);
        h.leave(&count);
        assert_eq!(
            h.record(true, 1, 1, &count),
            None,
            "nothing recorded after leaving"
        );
        assert_eq!(count.load(Ordering::Relaxed), 0, "taken out once");
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// A probe's result recorded while the endpoint is removed: whatever the interleaving,
    /// the endpoint is out of the count afterwards, taken out once (a leak kept the
    /// balancer's healthy gauge wrong for good; a second take wrapped the count).
    fn removed_while_recorded(start_unhealthy: bool, passed: bool) {
        loom::model(move || {
            let count = Arc::new(AtomicUsize::new(0));
            let h = Arc::new(HealthCheck::default());
            if start_unhealthy {
                h.record(false, 1, 1, &count);
            }
            let prober = {
                let (h, count) = (h.clone(), count.clone());
                thread::spawn(move || {
                    h.record(passed, 1, 1, &count);
                })
            };
            h.leave(&count);
            prober.join().unwrap();
            assert_eq!(count.load(Ordering::SeqCst), 0);
        });
    }

    #[test]
    fn loom_failing_probe_while_removed() {
        removed_while_recorded(false, false);
    }

    #[test]
    fn loom_passing_probe_while_removed() {
        removed_while_recorded(true, true);
    }
}
