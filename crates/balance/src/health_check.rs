//! Active health: the result of each probe moves an endpoint between healthy and unhealthy
//! once `healthy_threshold` probes in a row pass, or `unhealthy_threshold` in a row fail.
//!
//! Only the health-check task writes this state; picks read [`HealthCheck::is_healthy`].

use tower_prism_core::sync::{AtomicBool, AtomicU32, Ordering};

/// Per-endpoint active health state. Endpoints start healthy.
#[derive(Debug)]
pub struct HealthCheck {
    healthy: AtomicBool,
    /// Probes in a row that disagree with the current state.
    streak: AtomicU32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
        }
    }
}

impl HealthCheck {
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
}
