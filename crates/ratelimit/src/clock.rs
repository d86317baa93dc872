//! [`Clock`]: where a rate limiter reads the time.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Where a rate limiter reads the time for its buckets. Chosen when the limiter is built
/// (a running limiter keeps its clock: a reload that changes it is refused).
///
/// ```
/// use tower_prism_ratelimit::{Clock, RateLimitConfig};
///
/// let cfg: RateLimitConfig = toml::from_str("rate = 100\nclock = \"tsc\"").unwrap();
/// assert_eq!(cfg.clock, Clock::Tsc);
/// assert_eq!(RateLimitConfig::new(100, std::time::Duration::from_secs(1)).clock, Clock::Tokio);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// [`tokio::time::Instant`] (the default): follows `tokio::time::pause()` and
    /// `advance()`, so paused-time tests drive the limiter. Outside paused tests it is the
    /// OS monotonic clock (`clock_gettime`, about 25 ns a read on the machine
    /// `BENCHMARKS.md` was measured on: half of an uncontended admission).
    #[default]
    Tokio,
    /// The CPU's time-stamp counter, read through `quanta` and calibrated against the
    /// monotonic clock (about 10 ns a read there), as governor does; where the CPU has no
    /// invariant TSC it is the monotonic clock. It does **not** follow tokio's paused clock:
    /// use it in production where the admit path's cost matters, not in paused-time tests.
    Tsc,
}

/// The limiter's time base: nanoseconds since it was built, from the chosen clock.
pub(crate) enum TimeSource {
    Tokio { epoch: Instant },
    Tsc { clock: quanta::Clock, epoch: u64 },
}

impl TimeSource {
    pub(crate) fn new(clock: Clock) -> Self {
        match clock {
            Clock::Tokio => TimeSource::Tokio {
                epoch: Instant::now(),
            },
            Clock::Tsc => {
                // The first `quanta::Clock::new()` in a process calibrates (tens of ms);
                // later ones reuse that calibration.
                let clock = quanta::Clock::new();
                let epoch = clock.raw();
                TimeSource::Tsc { clock, epoch }
            }
        }
    }

    pub(crate) fn clock(&self) -> Clock {
        match self {
            TimeSource::Tokio { .. } => Clock::Tokio,
            TimeSource::Tsc { .. } => Clock::Tsc,
        }
    }

    /// Nanoseconds since the epoch, now.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            TimeSource::Tokio { epoch } => since(*epoch, Instant::now()),
            TimeSource::Tsc { clock, epoch } => clock.delta_as_nanos(*epoch, clock.raw()),
        }
    }

    /// Nanoseconds since the epoch at `now`, a tokio reading the caller already has (the
    /// queue's deadlines are in tokio time). With the TSC clock, the counter is read anew.
    #[inline]
    pub(crate) fn at(&self, now: Instant) -> u64 {
        match self {
            TimeSource::Tokio { epoch } => since(*epoch, now),
            TimeSource::Tsc { .. } => self.now(),
        }
    }
}

#[inline]
fn since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_tsc_clock_counts_nanoseconds_of_real_time() {
        let source = TimeSource::new(Clock::Tsc);
        let (a, start) = (source.now(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (b, real) = (source.now(), start.elapsed());
        let measured = Duration::from_nanos(b - a);
        // Calibrated against the monotonic clock: within a few percent of it (sleep and
        // scheduling noise aside, both readings bracket the same interval).
        assert!(measured >= real.mul_f64(0.9), "{measured:?} vs {real:?}");
        assert!(
            measured <= real.mul_f64(1.1) + Duration::from_millis(2),
            "{measured:?} vs {real:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time_and_the_tsc_clock_does_not() {
        let tokio = TimeSource::new(Clock::Tokio);
        let tsc = TimeSource::new(Clock::Tsc);
        let (t0, s0) = (tokio.now(), tsc.now());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(tokio.now() - t0, 3_600_000_000_000);
        assert!(
            tsc.now() - s0 < 60_000_000_000,
            "the TSC clock ignored the advance"
        );
        assert_eq!(tokio.clock(), Clock::Tokio);
        assert_eq!(tsc.clock(), Clock::Tsc);
    }
}
