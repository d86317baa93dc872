//! Active health: the result of each probe moves an endpoint between healthy and unhealthy
//! once `healthy_threshold` probes in a row pass, or `unhealthy_threshold` in a row fail.
//!
//! An endpoint of a balancer with a probe starts pending, out of rotation, as Envoy's: its
//! first probe decides at once (a pass puts it in, whatever `healthy_threshold` says); the
//! thresholds apply from then on. Only the health-check task writes this state; picks read
//! [`HealthCheck::is_healthy`].

use tower_prism_core::sync::{AtomicBool, AtomicU32, Ordering};

/// Per-endpoint active health state.
#[derive(Debug)]
pub struct HealthCheck {
    healthy: AtomicBool,
    /// Not probed yet (and so not healthy).
    pending: AtomicBool,
    /// Probes in a row that disagree with the current state.
    streak: AtomicU32,
}

impl Default for HealthCheck {
    /// Healthy: an endpoint of a balancer without a probe.
    fn default() -> Self {
        HealthCheck {
            healthy: AtomicBool::new(true),
            pending: AtomicBool::new(false),
            streak: AtomicU32::new(0),
        }
    }
}

impl HealthCheck {
    /// Out of rotation until its first probe: an endpoint of a balancer with a probe.
    pub fn pending() -> Self {
        HealthCheck {
            healthy: AtomicBool::new(false),
            pending: AtomicBool::new(true),
            streak: AtomicU32::new(0),
        }
    }

    /// Whether the endpoint awaits its first probe.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Whether the endpoint passes its health checks.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Records one probe. Returns `Some(new_state)` when the state flips.
    pub fn record(
        &self,
        passed: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<bool> {
        if self.pending.swap(false, Ordering::AcqRel) {
            self.healthy.store(passed, Ordering::Release);
            return Some(passed);
        }
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
        let h = HealthCheck::default();
        assert!(h.is_healthy());
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(
            h.record(true, 2, 3),
            None,
            "a pass resets the failing streak"
        );
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), Some(false));
        assert!(!h.is_healthy());
        assert_eq!(h.record(true, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), Some(true));
        assert!(h.is_healthy());
    }

    #[test]
    fn the_first_probe_of_a_pending_endpoint_decides_at_once() {
        let h = HealthCheck::pending();
        assert!(!h.is_healthy() && h.is_pending());
        assert_eq!(
            h.record(true, 3, 3),
            Some(true),
            "no threshold for the first"
        );
        assert!(h.is_healthy() && !h.is_pending());
        let h = HealthCheck::pending();
        assert_eq!(h.record(false, 3, 3), Some(false));
        assert_eq!(h.record(true, 2, 3), None, "then the thresholds apply");
        assert_eq!(h.record(true, 2, 3), Some(true));
    }
}
