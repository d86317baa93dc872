//! Backoff schedules: how long to wait before each retry. Pure functions of the retry number,
//! the previous delay and a random word; no clock, no tower types.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{check_duration_at_most, ConfigError};
use tower_prism_core::internal::nanos;

use crate::config::MAX_WAIT;

/// The shape of the schedule before jitter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackoffKind {
    /// Retry at once.
    None,
    /// Wait `base` every time.
    Fixed,
    /// Wait `base * n` before retry `n`.
    Linear,
    /// Wait `base * 2^(n-1)` before retry `n`.
    #[default]
    Exponential,
}

/// Randomisation applied to the schedule, so that clients that failed together do not
/// retry together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// The schedule as is.
    None,
    /// Uniform in `[0, d]` for a scheduled delay `d`.
    #[default]
    Full,
    /// Uniform in `[d/2, d]`.
    Equal,
    /// Uniform in `[base, 3 * previous]`, capped at `max` ("decorrelated jitter"). It
    /// replaces the kind's schedule: each delay grows from the previous one.
    Decorrelated,
}

/// A backoff schedule with a cap. `delay` is pure, so every schedule is unit-testable.
///
/// In a config: `backoff = { kind = "exponential", base = "50ms", max = "2s", jitter = "full" }`.
///
/// ```
/// use std::time::Duration;
/// use tower_prism_retry::{Backoff, BackoffKind, Jitter};
///
/// let b = Backoff::exponential(Duration::from_millis(50), Duration::from_secs(2)).jitter(Jitter::None);
/// let ms = |n| b.delay(n, Duration::ZERO, 0).as_millis();
/// assert_eq!([ms(1), ms(2), ms(3), ms(7)], [50, 100, 200, 2000]);
/// assert_eq!(b.kind, BackoffKind::Exponential);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Backoff {
    /// The schedule's shape.
    #[serde(default)]
    pub kind: BackoffKind,
    /// The first delay (and the unit of linear growth).
    #[serde(default = "default_base", with = "tower_prism_core::config::duration")]
    pub base: Duration,
    /// No delay is longer than this (at most one hour).
    #[serde(default = "default_max", with = "tower_prism_core::config::duration")]
    pub max: Duration,
    /// Randomisation.
    #[serde(default)]
    pub jitter: Jitter,
}

fn default_base() -> Duration {
    Duration::from_millis(50)
}

fn default_max() -> Duration {
    Duration::from_secs(2)
}

impl Default for Backoff {
    /// Exponential from 50 ms, capped at 2 s, with full jitter.
    fn default() -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base: default_base(),
            max: default_max(),
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// No wait between attempts.
    pub fn none() -> Self {
        Backoff {
            kind: BackoffKind::None,
            base: Duration::ZERO,
            max: Duration::ZERO,
            jitter: Jitter::None,
        }
    }

    /// `delay` every time, no jitter.
    pub fn fixed(delay: Duration) -> Self {
        Backoff {
            kind: BackoffKind::Fixed,
            base: delay,
            max: delay,
            jitter: Jitter::None,
        }
    }

    /// `base * n`, capped at `max`, no jitter.
    pub fn linear(base: Duration, max: Duration) -> Self {
        Backoff {
            kind: BackoffKind::Linear,
            base,
            max,
            jitter: Jitter::None,
        }
    }

    /// `base * 2^(n-1)`, capped at `max`, with full jitter.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base,
            max,
            jitter: Jitter::Full,
        }
    }

    /// The same schedule with another jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Checks `base` and `max` (field names as in a config): both at most [`MAX_WAIT`]
    /// (one hour), and `0 < base <= max` unless the kind is `none`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Bounded whatever the kind: a value a config holds is never absurd, used or not.
        check_duration_at_most("backoff.base", self.base, MAX_WAIT)?;
        check_duration_at_most("backoff.max", self.max, MAX_WAIT)?;
        if self.kind == BackoffKind::None {
            return Ok(());
        }
        if self.base.is_zero() {
            return Err(ConfigError::new(
                "backoff.base",
                humantime::format_duration(self.base),
                "must be longer than zero (use kind = \"none\" for no wait)",
            ));
        }
        if self.max < self.base {
            return Err(ConfigError::new(
                "backoff.max",
                humantime::format_duration(self.max),
                format!(
                    "must be at least `backoff.base` ({})",
                    humantime::format_duration(self.base)
                ),
            ));
        }
        Ok(())
    }

    /// The schedule's delay before retry `retry` (1 = the first retry), before jitter.
    pub fn scheduled(&self, retry: u32) -> Duration {
        let n = retry.max(1);
        let raw = match self.kind {
            BackoffKind::None => Duration::ZERO,
            BackoffKind::Fixed => self.base,
            BackoffKind::Linear => self.base.saturating_mul(n),
            BackoffKind::Exponential => self.base.saturating_mul(1u32 << (n - 1).min(31)),
        };
        raw.min(self.max)
    }

    /// The delay before retry `retry` (1 = the first retry). `previous` is the delay before
    /// the previous retry (used by decorrelated jitter; zero before the first) and `random`
    /// a uniformly random word. Never longer than `max`.
    pub fn delay(&self, retry: u32, previous: Duration, random: u64) -> Duration {
        if self.kind == BackoffKind::None {
            return Duration::ZERO;
        }
        match self.jitter {
            Jitter::None => self.scheduled(retry),
            Jitter::Full => uniform(self.scheduled(retry), random),
            Jitter::Equal => {
                let d = self.scheduled(retry);
                let half = d / 2;
                half + uniform(d - half, random)
            }
            Jitter::Decorrelated => {
                let high = previous.max(self.base).saturating_mul(3).min(self.max);
                let low = self.base.min(high);
                (low + uniform(high - low, random)).min(self.max)
            }
        }
    }
}

/// A duration uniform in `[0, d]`, chosen by `random`.
fn uniform(d: Duration, random: u64) -> Duration {
    let nanos = nanos(d);
    let pick = ((u128::from(nanos) + 1) * u128::from(random)) >> 64;
    Duration::from_nanos(pick as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn schedules_without_jitter() {
        let ms = |b: Backoff, n| b.delay(n, Duration::ZERO, u64::MAX).as_millis();
        let none = Backoff::none();
        assert_eq!((1..=3).map(|n| ms(none, n)).collect::<Vec<_>>(), [0, 0, 0]);
        let fixed = Backoff::fixed(MS * 30);
        assert_eq!(
            (1..=3).map(|n| ms(fixed, n)).collect::<Vec<_>>(),
            [30, 30, 30]
        );
        let linear = Backoff::linear(MS * 10, MS * 35);
        assert_eq!(
            (1..=5).map(|n| ms(linear, n)).collect::<Vec<_>>(),
            [10, 20, 30, 35, 35]
        );
        let exp = Backoff::exponential(MS * 10, MS * 100).jitter(Jitter::None);
        assert_eq!(
            (1..=6).map(|n| ms(exp, n)).collect::<Vec<_>>(),
            [10, 20, 40, 80, 100, 100]
        );
        // huge retry numbers saturate instead of overflowing
        assert_eq!(exp.delay(u32::MAX, Duration::ZERO, 0), MS * 100);
    }

    #[test]
    fn jitter_spans_its_range() {
        let b = Backoff::exponential(MS * 100, Duration::from_secs(10));
        // full: 0 ..= 400ms for the 3rd retry
        assert_eq!(b.delay(3, Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(b.delay(3, Duration::ZERO, u64::MAX), MS * 400);
        let mid = b.delay(3, Duration::ZERO, u64::MAX / 2);
        assert!(mid > MS * 199 && mid < MS * 201, "{mid:?}");
        // equal: 200 ..= 400ms
        let e = b.jitter(Jitter::Equal);
        assert_eq!(e.delay(3, Duration::ZERO, 0), MS * 200);
        assert_eq!(e.delay(3, Duration::ZERO, u64::MAX), MS * 400);
        // decorrelated: base ..= 3 * previous
        let d = b.jitter(Jitter::Decorrelated);
        assert_eq!(d.delay(1, Duration::ZERO, 0), MS * 100);
        assert_eq!(d.delay(1, Duration::ZERO, u64::MAX), MS * 300);
        assert_eq!(d.delay(2, MS * 300, u64::MAX), MS * 900);
        assert_eq!(
            d.delay(9, Duration::from_secs(9), u64::MAX),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn validation_names_the_field() {
        assert!(Backoff::default().validate().is_ok());
        assert!(Backoff::none().validate().is_ok());
        let err = Backoff::fixed(Duration::ZERO).validate().unwrap_err();
        assert_eq!(err.field(), "backoff.base");
        let err = Backoff::linear(MS * 10, MS * 5).validate().unwrap_err();
        assert_eq!(err.field(), "backoff.max");
        let day = Duration::from_secs(86_400);
        let unused = Backoff {
            max: day,
            ..Backoff::none()
        };
        let err = unused.validate().unwrap_err();
        assert_eq!(err.field(), "backoff.max", "bounded even when unused");
        let err = Backoff::linear(day, day).validate().unwrap_err();
        assert_eq!(err.field(), "backoff.base");
        assert_eq!(err.reason(), "must be at most 1h");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn every_delay_is_within_its_bounds(
            base_ms in 1u64..1000, extra_ms in 0u64..10_000, retry in 1u32..40,
            prev_ms in 0u64..20_000, random: u64, kind in 0u8..4, jitter in 0u8..4,
        ) {
            let kind = [BackoffKind::None, BackoffKind::Fixed, BackoffKind::Linear, BackoffKind::Exponential][kind as usize];
            let jitter = [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated][jitter as usize];
            let b = Backoff { kind, base: MS * base_ms as u32, max: MS * (base_ms + extra_ms) as u32, jitter };
            let d = b.delay(retry, MS * prev_ms as u32, random);
            prop_assert!(d <= b.max);
            let scheduled = b.scheduled(retry);
            match (kind, jitter) {
                (BackoffKind::None, _) => prop_assert_eq!(d, Duration::ZERO),
                (_, Jitter::None) => prop_assert_eq!(d, scheduled),
                (_, Jitter::Full) => prop_assert!(d <= scheduled),
                (_, Jitter::Equal) => prop_assert!(d >= scheduled / 2 && d <= scheduled),
                (_, Jitter::Decorrelated) => prop_assert!(d >= b.base),
            }
        }
    }
}
