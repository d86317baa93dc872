//! [`Clock`]: where a component reads the time, and [`TimeSource`], the time base built
//! from it (nanoseconds since an epoch, as plain `u64`s for atomic state).

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

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
/// assert_eq!(Clock::default(), Clock::Auto);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// The default: the CPU's counter (as [`Clock::Tsc`]) in production, tokio's clock (as
    /// [`Clock::Tokio`]) where tokio's clock is paused. Decided once, at the component's
    /// first reading of the time: a component first used after `tokio::time::pause()`
    /// (or under `#[tokio::test(start_paused = true)]`) follows paused time for good; one
    /// first used on real time keeps real time even if the clock is paused later.
    #[default]
    Auto,
    /// [`tokio::time::Instant`][tokio-instant]: follows `tokio::time::pause()` and
    /// `advance()` whenever they are called. Outside paused tests it is the OS monotonic
    /// clock (`clock_gettime`), whose read is a large part of an uncontended admission.
    ///
    /// [tokio-instant]: https://docs.rs/tokio/1/tokio/time/struct.Instant.html
    Tokio,
    /// The CPU's time-stamp counter, read through `quanta` and calibrated against the
    /// monotonic clock (a cheaper read), as governor does; where the CPU has no
    /// invariant TSC it is the monotonic clock. It does **not** follow tokio's paused clock.
    Tsc,
}

impl Clock {
    /// Its name in config files: `"auto"`, `"tokio"` or `"tsc"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Clock::Auto => "auto",
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

    /// [`elapsed_to`](Self::elapsed_to) in nanoseconds (saturating at `u64::MAX`): on the
    /// counter a subtraction, without the 128-bit arithmetic of a `Duration`.
    #[inline]
    pub fn nanos_to(self, later: Moment) -> u64 {
        match (self, later) {
            (Moment::Nanos(a), Moment::Nanos(b)) => b.saturating_sub(a),
            _ => crate::internal::nanos(self.elapsed_to(later)),
        }
    }
}

/// A time base: nanoseconds since it was made, read from the chosen [`Clock`].
pub struct TimeSource {
    clock: Clock,
    /// When it was made on tokio's clock.
    tokio_epoch: Instant,
    /// The counter, calibrated when the source is made (the first calibration in a process
    /// takes tens of milliseconds: not on a request's path), and its reading then. `None`
    /// on [`Clock::Tokio`].
    counter: Option<(quanta::Clock, u64)>,
    /// The clock actually read; set when made, or for [`Clock::Auto`] at the first reading.
    base: OnceLock<Base>,
}

enum Base {
    Tokio { epoch: Instant },
    Tsc { counter: quanta::Clock, epoch: u64 },
}

impl fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TimeSource").field(&self.clock).finish()
    }
}

impl TimeSource {
    /// Starts a time base on `clock`, at 0 now ([`Clock::Auto`] picks its clock at the
    /// first reading).
    pub fn new(clock: Clock) -> Self {
        let counter = (clock != Clock::Tokio).then(|| {
            let counter = quanta::Clock::new();
            let epoch = counter.raw();
            (counter, epoch)
        });
        let source = TimeSource {
            clock,
            tokio_epoch: Instant::now(),
            counter,
            base: OnceLock::new(),
        };
        match clock {
            Clock::Tokio => source.start(false),
            Clock::Tsc => source.start(true),
            Clock::Auto => {}
        }
        source
    }

    /// The clock it was built on.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Whether it reads tokio's clock (so follows paused time). A [`Clock::Auto`] source
    /// decides here if it has not yet.
    pub fn follows_tokio(&self) -> bool {
        matches!(self.base(), Base::Tokio { .. })
    }

    #[inline(always)]
    fn base(&self) -> &Base {
        match self.base.get() {
            Some(base) => base,
            None => self.decide(),
        }
    }

    /// [`Clock::Auto`]'s first reading: tokio's clock if it is paused, the counter if not.
    #[cold]
    #[inline(never)]
    fn decide(&self) -> &Base {
        self.start(!tokio_clock_paused());
        self.base.get().expect("started above")
    }

    fn start(&self, counter: bool) {
        let base = match &self.counter {
            Some((clock, epoch)) if counter => Base::Tsc {
                counter: clock.clone(),
                epoch: *epoch,
            },
            _ => Base::Tokio {
                epoch: self.tokio_epoch,
            },
        };
        // A racing first reading on another thread decided the same way; keep the first.
        let _ = self.base.set(base);
    }

    /// Nanoseconds since the epoch, now. Inlined on the counter, the production default;
    /// tokio's clock (paused-time tests, `clock = "tokio"`) is a call out of line.
    #[inline(always)]
    pub fn now(&self) -> u64 {
        match self.base() {
            Base::Tsc { counter, epoch } => counter.delta_as_nanos(*epoch, read(counter)),
            Base::Tokio { epoch } => since_now(*epoch),
        }
    }

    /// Now, as a [`Moment`] (on the tokio clock, an `Instant` not yet converted).
    #[inline]
    pub fn moment(&self) -> Moment {
        match self.base() {
            Base::Tokio { .. } => Moment::Tokio(Instant::now()),
            Base::Tsc { counter, epoch } => {
                Moment::Nanos(counter.delta_as_nanos(*epoch, read(counter)))
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
    /// callers that also keep tokio deadlines). On the counter, it is read anew.
    #[inline]
    pub fn at(&self, now: Instant) -> u64 {
        match self.base() {
            Base::Tokio { epoch } => since(*epoch, now),
            Base::Tsc { .. } => self.now(),
        }
    }
}

/// Whether tokio's clock is paused for this thread (outside a runtime it never is). A
/// paused clock stands still while real time passes: it moves only by `advance` or when
/// the runtime idles, and neither can happen during this synchronous check, which takes
/// about 20 microseconds once per component.
fn tokio_clock_paused() -> bool {
    const WAIT: Duration = Duration::from_micros(20);
    let start = Instant::now();
    let real = std::time::Instant::now();
    loop {
        // Read tokio's clock after noting whether WAIT had passed, so the last reading is
        // WAIT of real time after `start`: a running clock has moved by then.
        let waited = real.elapsed() >= WAIT;
        if Instant::now() != start {
            return false;
        }
        if waited {
            return true;
        }
        std::hint::spin_loop();
    }
}

/// The counter now, shared with the other stages of a stack inside
/// [`reading::shared`](crate::internal::reading::shared).
#[inline]
fn read(counter: &quanta::Clock) -> u64 {
    crate::internal::reading::counter(|| counter.raw())
}

#[inline(never)]
fn since_now(epoch: Instant) -> u64 {
    since(epoch, Instant::now())
}

#[inline]
fn since(epoch: Instant, now: Instant) -> u64 {
    crate::internal::nanos(now.saturating_duration_since(epoch))
}

#[cfg(all(test, not(loom)))]
mod tests {
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

    #[tokio::test(start_paused = true)]
    async fn the_auto_clock_follows_a_paused_tokio_clock() {
        let auto = TimeSource::new(Clock::Auto);
        let t0 = auto.now();
        assert!(auto.follows_tokio());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(auto.now() - t0, 60_000_000_000);
        assert_eq!(auto.clock(), Clock::Auto);
    }

    #[tokio::test]
    async fn the_auto_clock_reads_the_counter_on_real_time_and_keeps_it() {
        let auto = TimeSource::new(Clock::Auto);
        let t0 = auto.now();
        assert!(!auto.follows_tokio());
        // Decided at the first reading: pausing afterwards does not move it to tokio's.
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(auto.now() - t0 < 60_000_000_000);
        assert!(matches!(auto.moment(), Moment::Nanos(_)));
    }

    #[test]
    fn the_auto_clock_reads_the_counter_outside_a_runtime() {
        let auto = TimeSource::new(Clock::Auto);
        assert!(!auto.follows_tokio());
        let (a, b) = (auto.now(), auto.now());
        assert!(b >= a);
    }

    #[tokio::test(start_paused = true)]
    async fn the_auto_clock_decides_at_its_first_reading_not_when_built() {
        tokio::time::resume();
        let auto = TimeSource::new(Clock::Auto);
        tokio::time::pause();
        let t0 = auto.now();
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(auto.now() - t0, 1_500_000_000);
    }

    #[test]
    fn clocks_are_named_in_config_files() {
        for clock in [Clock::Auto, Clock::Tokio, Clock::Tsc] {
            let text = serde_json::to_string(&clock).unwrap();
            assert_eq!(text, format!("\"{clock}\""));
            assert_eq!(serde_json::from_str::<Clock>(&text).unwrap(), clock);
        }
    }
}
