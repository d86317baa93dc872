//! The tunables the hot path reads, as atomics so a running breaker can be reconfigured
//! without a lock.

use std::time::Duration;

use tower_prism_core::internal::nanos;
use tower_prism_core::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use tower_prism_core::Outcome;

use crate::config::{BreakerConfig, MIN_HINTED_WAIT};
use crate::window::Counts;

/// One in millionths.
const PPM: u64 = 1_000_000;

/// A rate in (0, 1] (validated) in millionths, rounded: thresholds are exact to six
/// decimals. Window counts are at most 2^24, so `count * PPM` fits a `u64`.
fn ppm(rate: f64) -> u64 {
    ((rate * PPM as f64).round() as u64).max(1)
}

/// A [`BreakerConfig`]'s numbers, each in its own atomic.
#[derive(Debug)]
pub(crate) struct Params {
    /// The thresholds in millionths: compared in integers, a rate equal to its threshold
    /// trips it exactly (`failures >= 0.55 * calls` in floating point misses 55 of 100).
    failure_ppm: AtomicU64,
    slow_ppm: AtomicU64,
    pub(crate) slow_nanos: AtomicU64,
    pub(crate) minimum_calls: AtomicU32,
    pub(crate) consecutive: AtomicU32,
    pub(crate) wait_nanos: AtomicU64,
    pub(crate) max_wait_nanos: AtomicU64,
    max_hint_nanos: AtomicU64,
    pub(crate) multiplier: AtomicU64,
    pub(crate) probes: AtomicU32,
    /// `max_wait_in_half_open` in nanoseconds; 0: no limit.
    pub(crate) half_open_max_nanos: AtomicU64,
    count_fatal: AtomicBool,
    count_not_retryable: AtomicBool,
}

impl Params {
    pub(crate) fn new(c: &BreakerConfig) -> Self {
        Params {
            failure_ppm: AtomicU64::new(ppm(c.failure_rate_threshold)),
            slow_ppm: AtomicU64::new(ppm(c.slow_call_rate_threshold)),
            slow_nanos: AtomicU64::new(nanos(c.slow_call_duration)),
            minimum_calls: AtomicU32::new(c.effective_minimum_calls()),
            consecutive: AtomicU32::new(c.consecutive_failures.unwrap_or(0)),
            wait_nanos: AtomicU64::new(nanos(c.wait_duration)),
            max_wait_nanos: AtomicU64::new(nanos(c.effective_max_wait())),
            max_hint_nanos: AtomicU64::new(nanos(c.effective_max_hinted_wait())),
            multiplier: AtomicU64::new(c.backoff_multiplier.to_bits()),
            probes: AtomicU32::new(c.permitted_calls_in_half_open),
            half_open_max_nanos: AtomicU64::new(c.max_wait_in_half_open.map_or(0, nanos)),
            count_fatal: AtomicBool::new(c.count_fatal),
            count_not_retryable: AtomicBool::new(c.count_not_retryable),
        }
    }

    /// Stores every value of `c` (each atomically; a reader may see a mix for an instant).
    pub(crate) fn store(&self, c: &BreakerConfig) {
        let fresh = Params::new(c);
        macro_rules! copy {
            ($($f:ident),*) => { $( self.$f.store(fresh.$f.load(Relaxed), Relaxed); )* };
        }
        copy!(
            failure_ppm,
            slow_ppm,
            slow_nanos,
            minimum_calls,
            consecutive,
            wait_nanos,
            max_wait_nanos,
            max_hint_nanos,
            multiplier,
            probes,
            half_open_max_nanos,
            count_fatal,
            count_not_retryable
        );
    }

    /// The open wait, in nanoseconds, after `reopens` opens since the breaker last closed:
    /// `hint` (the upstream's own word) clamped to [[`MIN_HINTED_WAIT`], the effective
    /// max hinted wait] if given, else `wait_duration * backoff_multiplier^reopens`, at
    /// most the effective `max_wait_duration`; never zero.
    pub(crate) fn open_wait(&self, reopens: u32, hint: Option<Duration>) -> u64 {
        let wait = match hint {
            Some(hint) => {
                let max = self.max_hint_nanos.load(Relaxed);
                nanos(hint).clamp(nanos(MIN_HINTED_WAIT).min(max), max)
            }
            None => {
                let max = self.max_wait_nanos.load(Relaxed);
                let base = self.wait_nanos.load(Relaxed) as f64;
                let factor = f64::from_bits(self.multiplier.load(Relaxed));
                (base * factor.powi(reopens.min(1000) as i32)).min(max as f64) as u64
            }
        };
        wait.max(1)
    }

    /// Whether `c` reaches the failure-rate or the slow-call-rate threshold.
    pub(crate) fn trips(&self, c: Counts) -> bool {
        let calls = u64::from(c.calls);
        u64::from(c.failures) * PPM >= self.failure_ppm.load(Relaxed) * calls
            || u64::from(c.slow) * PPM >= self.slow_ppm.load(Relaxed) * calls
    }

    /// Whether `outcome` counts as a failure under the `count_*` switches.
    #[inline]
    pub(crate) fn counts_as_failure(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Success => false,
            Outcome::Failure { retryable: true } => true,
            Outcome::Failure { retryable: false } => self.count_not_retryable.load(Relaxed),
            Outcome::Fatal => self.count_fatal.load(Relaxed),
        }
    }
}
