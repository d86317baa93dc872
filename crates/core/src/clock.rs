//! [`Clock`]: where a component reads the time, and [`TimeSource`], the time base built
//! from it (nanoseconds since an epoch, as plain `u64`s for atomic state).

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::ConfigError;

/// Where a component reads the time (the rate limiter's buckets and the circuit breaker's
/// call timing and open waits). Chosen when the component is built; a running one keeps
/// its clock.
///
/// ```
/// use tower_prism_core::{Clock, TimeSource};
///
/// let clock: Clock = serde_json::from_str("\"tsc\"").unwrap();
/// let time = TimeSource::new(clock);
/// let (a, b) = (time.now(), time.now());
/// assert!(b >= a);
/// assert_eq!(time.clock(), Clock::Tsc);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// [`tokio::time::Instant`][tokio-instant] (the default): follows `tokio::time::pause()`
    /// and `advance()`, so paused-time tests drive the component. Outside paused tests it is
    /// the OS monotonic clock (`clock_gettime`), whose read is a large part of an
    /// uncontended admission.
    ///
    /// [tokio-instant]: https://docs.rs/tokio/1/tokio/time/struct.Instant.html
    #[default]
    Tokio,
    /// The CPU's time-stamp counter, read through `quanta` and calibrated against the
    /// monotonic clock (a cheaper read), as governor does; where the CPU has no
    /// invariant TSC it is the monotonic clock. It does **not** follow tokio's paused clock:
    /// use it in production where the admit path's cost matters, not in paused-time tests.
    Tsc,
}

impl Clock {
    /// Its name in config files: `"tokio"` or `"tsc"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Clock::Tokio => "tokio",
            Clock::Tsc => "tsc",
        }
    }

    /// Refuses to move a running `what` (a component whose state is kept on the `running`
    /// clock) to this clock: its stored times would mean nothing on the other one.
    pub fn check_unchanged(self, running: Clock, what: &str) -> Result<(), ConfigError> {
        if self == running {
            return Ok(());
        }
        Err(ConfigError::new(
            "clock",
            self,
            format!("a running {what} keeps its clock ({running}); build a new one to change it"),
        ))
    }
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A moment read from a [`TimeSource`]: a tokio reading, turned into nanoseconds only
/// where they are needed, or nanoseconds already (TSC clock). Measuring a call with two of
/// them costs the tokio clock nothing over two `Instant`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Read from the tokio clock.
    Tokio(Instant),
    /// Nanoseconds since the time source's epoch.
    Nanos(u64),
}

impl Moment {
    /// The time from `self` to `later` (zero if `later` is earlier, or if the two come from
    /// different clocks).
    #[inline]
    pub fn elapsed_to(self, later: Moment) -> std::time::Duration {
        match (self, later) {
            (Moment::Tokio(a), Moment::Tokio(b)) => b.saturating_duration_since(a),
            (Moment::Nanos(a), Moment::Nanos(b)) => {
                std::time::Duration::from_nanos(b.saturating_sub(a))
            }
            _ => std::time::Duration::ZERO,
        }
    }
}

/// A time base: nanoseconds since it was made, read from the chosen [`Clock`].
pub struct TimeSource(Source);

enum Source {
    Tokio { epoch: Instant },
    Tsc { clock: quanta::Clock, epoch: u64 },
}

impl fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TimeSource").field(&self.clock()).finish()
    }
}

impl TimeSource {
    /// Starts a time base on `clock`, at 0 now.
    pub fn new(clock: Clock) -> Self {
        TimeSource(match clock {
            Clock::Tokio => Source::Tokio {
                epoch: Instant::now(),
            },
            Clock::Tsc => {
                // The first `quanta::Clock::new()` in a process calibrates (tens of ms);
                // later ones reuse that calibration.
                let clock = quanta::Clock::new();
                let epoch = clock.raw();
                Source::Tsc { clock, epoch }
            }
        })
    }

    /// The clock it reads.
    pub fn clock(&self) -> Clock {
        match self.0 {
            Source::Tokio { .. } => Clock::Tokio,
            Source::Tsc { .. } => Clock::Tsc,
        }
    }

    /// Nanoseconds since the epoch, now.
    #[inline]
    pub fn now(&self) -> u64 {
        match &self.0 {
            Source::Tokio { epoch } => since(*epoch, Instant::now()),
            Source::Tsc { clock, epoch } => clock.delta_as_nanos(*epoch, clock.raw()),
        }
    }

    /// Now, as a [`Moment`] (on the tokio clock, an `Instant` not yet converted).
    #[inline]
    pub fn moment(&self) -> Moment {
        match &self.0 {
            Source::Tokio { .. } => Moment::Tokio(Instant::now()),
            Source::Tsc { clock, epoch } => {
                Moment::Nanos(clock.delta_as_nanos(*epoch, clock.raw()))
            }
        }
    }

    /// `moment` in nanoseconds since the epoch.
    #[inline]
    pub fn nanos_of(&self, moment: Moment) -> u64 {
        match moment {
            Moment::Tokio(now) => self.at(now),
            Moment::Nanos(nanos) => nanos,
        }
    }

    /// Nanoseconds since the epoch at `now`, a tokio reading the caller already has (for
    /// callers that also keep tokio deadlines). With the TSC clock, the counter is read anew.
    #[inline]
    pub fn at(&self, now: Instant) -> u64 {
        match &self.0 {
            Source::Tokio { epoch } => since(*epoch, now),
            Source::Tsc { .. } => self.now(),
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
        // The TSC interval [a, b] lies inside the monotonic one and holds the whole sleep,
        // so preemption between readings can only widen the bounds, never break them.
        let start = std::time::Instant::now();
        let a = source.now();
        std::thread::sleep(Duration::from_millis(20));
        let b = source.now();
        let real = start.elapsed();
        let measured = Duration::from_nanos(b - a);
        // Calibrated against the monotonic clock: within a few percent of it.
        assert!(measured >= Duration::from_millis(19), "{measured:?}");
        assert!(measured <= real.mul_f64(1.05), "{measured:?} vs {real:?}");
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
