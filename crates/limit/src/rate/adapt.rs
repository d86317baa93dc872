//! Adaptive rate: AIMD on downstream health, as read from core's [`HealthSignal`].
//!
//! Every `interval` the limiter reads the calls published since the previous read. If enough
//! calls were judged and their failure rate or mean latency crossed its threshold, the rate
//! is multiplied by `decrease_factor`; otherwise, if enough calls were seen, it grows by
//! `increase_step`. The result stays within `[min_rate, max_rate]`.
//!
//! While a breaker reports the circuit open the rate holds: the breaker already fails the
//! calls fast, so cutting the rate too would only keep the service slow after the upstream
//! is back (and the calls the breaker refuses say nothing about the upstream). A pure
//! function: no clock, no lock, no tower types.
//!
//! [`HealthSignal`]: tower_prism_core::HealthSignal

use tower_prism_core::HealthStats;

use super::adaptive::AdaptiveConfig;

/// Why the rate moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The failure rate crossed its threshold.
    Failures,
    /// The mean latency crossed its threshold.
    Latency,
    /// Downstream looked healthy.
    Healthy,
}

impl Reason {
    /// A short name for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Failures => "failure_rate",
            Reason::Latency => "latency",
            Reason::Healthy => "healthy",
        }
    }
}

/// The next rate after an interval with `stats`, or `None` to keep `current` (too few
/// calls, at a bound, or the circuit open).
pub(crate) fn next_rate(
    current: f64,
    stats: &HealthStats,
    cfg: &AdaptiveConfig,
) -> Option<(f64, Reason)> {
    let judged = stats.successes + stats.failures;
    let enough = judged >= cfg.min_calls.max(1);
    if stats.circuit_open {
        return None;
    }
    let reason = if enough
        && stats
            .failure_rate()
            .is_some_and(|r| r >= cfg.failure_rate_threshold)
    {
        Reason::Failures
    } else if enough
        && cfg
            .latency_threshold
            .zip(stats.mean_latency())
            .is_some_and(|(limit, mean)| mean >= limit)
    {
        Reason::Latency
    } else if enough {
        Reason::Healthy
    } else {
        return None;
    };
    let next = match reason {
        Reason::Healthy => current + cfg.increase_step,
        _ => current * cfg.decrease_factor,
    }
    .clamp(cfg.min_rate, cfg.max_rate);
    (next != current).then_some((next, reason))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stats(successes: u64, failures: u64, latency_ms: u64) -> HealthStats {
        HealthStats {
            successes,
            failures,
            fatal: 0,
            latency_nanos: latency_ms * 1_000_000 * (successes + failures),
            circuit_open: false,
        }
    }

    #[test]
    fn aimd_within_bounds() {
        let mut cfg = AdaptiveConfig::new(10.0, 100.0);
        cfg.latency_threshold = Some(Duration::from_millis(200));
        assert_eq!(
            next_rate(50.0, &stats(20, 0, 10), &cfg),
            Some((51.0, Reason::Healthy))
        );
        assert_eq!(
            next_rate(50.0, &stats(18, 2, 10), &cfg),
            Some((35.0, Reason::Failures))
        );
        assert_eq!(
            next_rate(50.0, &stats(20, 0, 300), &cfg),
            Some((35.0, Reason::Latency))
        );
        assert_eq!(
            next_rate(50.0, &stats(3, 3, 10), &cfg),
            None,
            "too few calls"
        );
        let open = HealthStats {
            circuit_open: true,
            ..stats(18, 2, 300)
        };
        assert_eq!(
            next_rate(50.0, &open, &cfg),
            None,
            "the rate holds while the circuit is open, failures and latency or not"
        );
        assert_eq!(
            next_rate(100.0, &stats(20, 0, 1), &cfg),
            None,
            "at the ceiling"
        );
    }
}
