//! Peak-EWMA latency estimate, as Finagle and linkerd use it: a new sample above the
//! estimate replaces it at once (the peak), a lower one is blended in with a weight that
//! depends on the time since the previous sample. Reads decay the estimate toward zero so an
//! endpoint that was slow once and then left idle is tried again.
//!
//! The estimate (an `f32` of nanoseconds) and the time of the last sample (milliseconds since
//! the balancer started, 32 bits: wraps after 49 days) are packed into one `AtomicU64`.

use tower_prism_core::sync::{AtomicU64, Ordering};

/// A lock-free peak-EWMA estimate of an endpoint's round-trip time.
#[derive(Debug)]
pub struct PeakEwma {
    state: AtomicU64,
}

fn pack(cost_ns: f64, at_ms: u64) -> u64 {
    (u64::from((cost_ns as f32).to_bits()) << 32) | (at_ms & 0xffff_ffff)
}

fn unpack(state: u64) -> (f64, u64) {
    (
        f64::from(f32::from_bits((state >> 32) as u32)),
        state & 0xffff_ffff,
    )
}

/// A reading up to this far behind the last sample is behind it, not 49 days ahead: on a
/// multi-threaded runtime another thread may store a newer sample between this thread's
/// clock reading and its load of the estimate.
const BEHIND_MS: u64 = 60_000;

/// Milliseconds from the sample stamped `at_ms` to `now_ms` on the 32-bit clock; 0 when
/// `now_ms` is behind it.
fn elapsed_ms(now_ms: u64, at_ms: u64) -> f64 {
    let d = (now_ms & 0xffff_ffff).wrapping_sub(at_ms) & 0xffff_ffff;
    if d > (1 << 32) - BEHIND_MS {
        0.0
    } else {
        d as f64
    }
}

impl PeakEwma {
    /// An estimate starting at `initial_ns` at time `now_ms`.
    pub fn new(initial_ns: f64, now_ms: u64) -> Self {
        PeakEwma {
            state: AtomicU64::new(pack(initial_ns, now_ms)),
        }
    }

    /// Blends in one round-trip sample taken at `now_ms`; `decay_ms` is the time constant.
    pub fn observe(&self, rtt_ns: f64, now_ms: u64, decay_ms: f64) {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (cost, at) = unpack(current);
            let elapsed = elapsed_ms(now_ms, at);
            // A reading behind the last sample weighs it fully and keeps its stamp: the
            // stamp never moves back.
            let stamp = if elapsed > 0.0 { now_ms } else { at };
            let next = if rtt_ns > cost {
                rtt_ns
            } else if elapsed <= 0.0 {
                // In the millisecond of the last sample the weight is exactly 1: the
                // estimate stands, with no `exp` and no write.
                return;
            } else {
                let w = (-elapsed / decay_ms).exp();
                cost * w + rtt_ns * (1.0 - w)
            };
            match self.state.compare_exchange_weak(
                current,
                pack(next, stamp),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// The estimate in nanoseconds as of `now_ms`, decayed for the time since the last sample.
    pub fn estimate(&self, now_ms: u64, decay_ms: f64) -> f64 {
        let (cost, at) = unpack(self.state.load(Ordering::Relaxed));
        let elapsed = elapsed_ms(now_ms, at);
        if elapsed <= 0.0 {
            cost
        } else {
            cost * (-elapsed / decay_ms).exp()
        }
    }

    /// The last stored estimate in nanoseconds, without decay.
    pub fn raw(&self) -> f64 {
        unpack(self.state.load(Ordering::Relaxed)).0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn peak_then_decay() {
        let e = PeakEwma::new(1_000_000.0, 0);
        e.observe(50_000_000.0, 10, 10_000.0);
        assert_eq!(e.raw(), 50_000_000.0, "a higher sample is taken at once");
        e.observe(1_000_000.0, 10, 10_000.0);
        assert_eq!(
            e.raw(),
            50_000_000.0,
            "no time passed: the low sample has no weight"
        );
        e.observe(1_000_000.0, 10_010, 10_000.0);
        let expected = 50e6 * (-1f64).exp() + 1e6 * (1.0 - (-1f64).exp());
        assert!((e.raw() - expected).abs() / expected < 1e-6, "{}", e.raw());
        let before = e.estimate(10_010, 10_000.0);
        let later = e.estimate(20_010, 10_000.0);
        assert!((later - before * (-1f64).exp()).abs() / later < 1e-6);
    }

    /// Another thread's newer sample stored between this thread's clock reading and its
    /// load: the reading is behind, not 49 days ahead (which decayed the estimate to 0 and
    /// let a faster sample replace the peak).
    #[test]
    fn a_reading_just_behind_the_last_sample_keeps_the_estimate() {
        let e = PeakEwma::new(1_000_000.0, 0);
        e.observe(500_000_000.0, 101, 10_000.0);
        assert_eq!(e.estimate(100, 10_000.0), 500_000_000.0);
        e.observe(1_000_000.0, 100, 10_000.0);
        assert_eq!(e.raw(), 500_000_000.0, "the peak stands");
        let later = e.estimate(10_101, 10_000.0);
        let expected = 500_000_000.0 * (-1f64).exp();
        assert!(
            (later - expected).abs() / expected < 1e-6,
            "stamp kept at 101: {later}"
        );
    }

    #[test]
    fn timestamps_wrap() {
        let e = PeakEwma::new(1000.0, u64::from(u32::MAX) - 5);
        // 10 ms later, across the 32-bit wrap
        let est = e.estimate(u64::from(u32::MAX) + 5, 10.0);
        assert!((est - 1000.0 * (-1f64).exp()).abs() < 1e-3, "{est}");
    }
}

#[cfg(all(loom, test))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn loom_concurrent_samples_keep_the_peak() {
        loom::model(|| {
            let e = Arc::new(PeakEwma::new(10.0, 5));
            let t = {
                let e = e.clone();
                thread::spawn(move || e.observe(50.0, 5, 1000.0))
            };
            e.observe(30.0, 5, 1000.0);
            t.join().unwrap();
            // no time passed, so a lower sample has no weight: the peak survives any interleaving
            assert_eq!(e.raw(), 50.0);
        });
    }
}
