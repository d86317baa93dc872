//! [`HedgeConfig`]: what a `[retry.hedge]` section holds.
//!
//! The file shape is flat (`delay = "50ms"`, or `percentile = 0.95` with its own optional
//! fields), read through [`RawHedgeConfig`] so that "exactly one of `delay` and
//! `percentile`" is a [`ConfigError`] naming the field rather than a serde puzzle.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{
    check_duration, check_duration_at_most, check_nonzero, check_size_at_most, ConfigError,
    MAX_SIZE,
};

use crate::config::MAX_WAIT;

/// The most hedges `max_hedged` accepts per call: past a few, more copies of a request
/// only add load.
pub const MAX_HEDGED: u32 = 8;

/// Hedging: after `delay` with no answer, the retry stage sends the same request again
/// (to another endpoint when a balancer is below), up to `max_hedged` extra attempts per
/// call, and takes the first acceptable answer; the others are cancelled. As in Polly,
/// `delay` is the longest wait: an attempt that fails retryably sends the next hedge at
/// once (after its `Retry-After` or gRPC pushback if it carries one, as gRFC A6 says; a
/// pushback saying not to retry, or a hint over `max_retry_after`, stops hedging and
/// retries, while the attempts in flight run on), and a zero delay sends them all at once
/// (parallel mode). The call fails only when every attempt has failed and no hedge or
/// retry remains. Hedges draw from the retry budget, and only replayable requests are
/// hedged (the rules of retries). A request whose [`ReplayBody`](crate::ReplayBody) an
/// attempt is still reading (a slow upload) is hedged only after it has been read, at the
/// next delay.
///
/// In a config, `[retry.hedge]` with exactly one of `delay` and `percentile`:
///
/// ```
/// use std::time::Duration;
/// use tower_prism_retry::{HedgeConfig, HedgeDelay};
///
/// let fixed: HedgeConfig = toml::from_str(r#"delay = "50ms""#).unwrap();
/// assert_eq!(fixed.delay, HedgeDelay::Fixed(Duration::from_millis(50)));
/// assert_eq!(fixed.max_hedged, 1);
///
/// let p95: HedgeConfig = toml::from_str(r#"
///     percentile = 0.95
///     min_delay = "2ms"
///     max_hedged = 2
/// "#).unwrap();
/// let HedgeDelay::Percentile(p) = p95.delay else { unreachable!() };
/// assert_eq!(p.percentile, 0.95);
/// assert_eq!(p.fallback_delay, Duration::from_millis(100)); // a default
///
/// let both = toml::from_str::<HedgeConfig>("delay = \"5ms\"\npercentile = 0.9");
/// assert!(both.unwrap_err().to_string().contains("exactly one of `delay` and `percentile`"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawHedgeConfig", into = "RawHedgeConfig")]
#[non_exhaustive]
pub struct HedgeConfig {
    /// How long an attempt goes unanswered, at most, before a hedge is sent: a retryable
    /// failure sends the next one at once; zero sends every hedge at once.
    pub delay: HedgeDelay,
    /// Hedges per call at most, beside the attempts retries make (default 1, at most
    /// [`MAX_HEDGED`]). Each is sent `delay` after the attempt before it, or as soon as
    /// an attempt fails retryably.
    pub max_hedged: u32,
}

/// When a hedge is sent: after a fixed delay, or after a latency percentile of recent
/// calls.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// A fixed delay (`delay = "50ms"`; at most one hour). Zero (`delay = "0s"`) is
    /// parallel mode: every hedge is sent at once with the first attempt.
    Fixed(Duration),
    /// A percentile of recent attempts' latencies (`percentile = 0.95`).
    Percentile(PercentileDelay),
}

/// A hedge delay that follows a percentile of the latencies of recent attempts.
///
/// Latencies (of successful attempts, and of attempts cancelled after another won, as a
/// lower bound) go into a lock-free histogram of two windows of `window` each; the
/// percentile is recomputed over both windows every `min_samples` records and at each
/// rotation, never per call. Until the histogram holds `min_samples` latencies, and
/// whenever it holds fewer, the delay is `fallback_delay`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PercentileDelay {
    /// The latency percentile, above 0 and below 1 (`0.95` = p95).
    pub percentile: f64,
    /// The shortest delay, whatever the percentile says (default 1 ms).
    pub min_delay: Duration,
    /// The delay while fewer than `min_samples` latencies are known (default 100 ms).
    pub fallback_delay: Duration,
    /// Latencies needed before the percentile is used (default 100).
    pub min_samples: u32,
    /// How long each of the two histogram windows lasts (default 10 s, from 1 s to one
    /// hour): a latency counts for between one and two windows.
    pub window: Duration,
}

impl PercentileDelay {
    /// `percentile` with every other field at its default.
    pub fn new(percentile: f64) -> Self {
        PercentileDelay {
            percentile,
            min_delay: Duration::from_millis(1),
            fallback_delay: Duration::from_millis(100),
            min_samples: 100,
            window: Duration::from_secs(10),
        }
    }
}

impl Default for HedgeConfig {
    /// p95 of recent latencies, one hedge per call.
    fn default() -> Self {
        HedgeConfig {
            delay: HedgeDelay::Percentile(PercentileDelay::new(0.95)),
            max_hedged: 1,
        }
    }
}

impl HedgeConfig {
    /// Hedging after a fixed `delay` (zero: parallel mode), one hedge per call.
    pub fn fixed(delay: Duration) -> Self {
        HedgeConfig {
            delay: HedgeDelay::Fixed(delay),
            max_hedged: 1,
        }
    }

    /// Hedging after the `percentile` of recent latencies (other fields at their
    /// defaults), one hedge per call.
    pub fn percentile(percentile: f64) -> Self {
        HedgeConfig {
            delay: HedgeDelay::Percentile(PercentileDelay::new(percentile)),
            max_hedged: 1,
        }
    }

    /// The same config with `max_hedged` set.
    #[must_use]
    pub fn max_hedged(mut self, n: u32) -> Self {
        self.max_hedged = n;
        self
    }

    /// A builder with one setter per key of a `[retry.hedge]` section;
    /// [`build`](HedgeConfigBuilder::build) checks it as a file is checked (exactly one of
    /// `delay` and `percentile`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_prism_retry::HedgeConfig;
    ///
    /// let p99 = HedgeConfig::builder()
    ///     .percentile(0.99)
    ///     .min_samples(50)
    ///     .max_hedged(2)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(p99.max_hedged, 2);
    /// assert!(HedgeConfig::builder().build().is_err(), "no delay given");
    /// let fixed = HedgeConfig::builder().delay(Duration::from_millis(30)).build().unwrap();
    /// assert_eq!(fixed, HedgeConfig::fixed(Duration::from_millis(30)));
    /// ```
    pub fn builder() -> HedgeConfigBuilder {
        HedgeConfigBuilder {
            raw: RawHedgeConfig::default(),
        }
    }

    /// Checks every field (names relative to the `hedge` section).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_nonzero("max_hedged", self.max_hedged)?;
        check_size_at_most("max_hedged", self.max_hedged, u64::from(MAX_HEDGED))?;
        match &self.delay {
            // zero is parallel mode: every hedge at once
            HedgeDelay::Fixed(d) => {
                check_duration_at_most("delay", *d, MAX_WAIT)?;
            }
            HedgeDelay::Percentile(p) => {
                if !(p.percentile.is_finite() && p.percentile > 0.0 && p.percentile < 1.0) {
                    return Err(ConfigError::new(
                        "percentile",
                        p.percentile,
                        "must be a number above 0 and below 1 (0.95 = p95)",
                    ));
                }
                check_duration_at_most("min_delay", p.min_delay, MAX_WAIT)?;
                check_duration("fallback_delay", p.fallback_delay)?;
                check_duration_at_most("fallback_delay", p.fallback_delay, MAX_WAIT)?;
                check_nonzero("min_samples", p.min_samples)?;
                check_size_at_most("min_samples", p.min_samples, MAX_SIZE)?;
                if p.window < Duration::from_secs(1) {
                    return Err(ConfigError::new(
                        "window",
                        humantime::format_duration(p.window),
                        "must be at least 1s",
                    ));
                }
                check_duration_at_most("window", p.window, MAX_WAIT)?;
            }
        }
        Ok(())
    }
}

/// Builds a [`HedgeConfig`], one setter per key of a `[retry.hedge]` section
/// ([`HedgeConfig::builder`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct HedgeConfigBuilder {
    raw: RawHedgeConfig,
}

impl HedgeConfigBuilder {
    /// A fixed delay before each hedge, at most (zero: every hedge at once).
    pub fn delay(mut self, d: Duration) -> Self {
        self.raw.delay = Some(d);
        self
    }

    /// The latency percentile to wait before each hedge (`0.95` = p95).
    pub fn percentile(mut self, p: f64) -> Self {
        self.raw.percentile = Some(p);
        self
    }

    /// With a percentile: the shortest delay (default 1 ms).
    pub fn min_delay(mut self, d: Duration) -> Self {
        self.raw.min_delay = Some(d);
        self
    }

    /// With a percentile: the delay until `min_samples` latencies are known (default
    /// 100 ms).
    pub fn fallback_delay(mut self, d: Duration) -> Self {
        self.raw.fallback_delay = Some(d);
        self
    }

    /// With a percentile: latencies needed before it is used (default 100).
    pub fn min_samples(mut self, n: u32) -> Self {
        self.raw.min_samples = Some(n);
        self
    }

    /// With a percentile: each histogram window's length (default 10 s).
    pub fn window(mut self, d: Duration) -> Self {
        self.raw.window = Some(d);
        self
    }

    /// Hedges per call at most (default 1).
    pub fn max_hedged(mut self, n: u32) -> Self {
        self.raw.max_hedged = Some(n);
        self
    }

    /// Checks the config (field names relative to the `hedge` section).
    pub fn build(self) -> Result<HedgeConfig, ConfigError> {
        HedgeConfig::try_from(self.raw)
    }
}

/// The file shape of a `[retry.hedge]` section (see [`HedgeConfig`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHedgeConfig {
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    percentile: Option<f64>,
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    min_delay: Option<Duration>,
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    fallback_delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_samples: Option<u32>,
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    window: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_hedged: Option<u32>,
}

impl TryFrom<RawHedgeConfig> for HedgeConfig {
    type Error = ConfigError;

    fn try_from(raw: RawHedgeConfig) -> Result<Self, ConfigError> {
        let delay = match (raw.delay, raw.percentile) {
            (Some(d), None) => {
                let only_percentile = [
                    ("min_delay", raw.min_delay.is_some()),
                    ("fallback_delay", raw.fallback_delay.is_some()),
                    ("min_samples", raw.min_samples.is_some()),
                    ("window", raw.window.is_some()),
                ];
                if let Some((field, _)) = only_percentile.iter().find(|(_, set)| *set) {
                    return Err(ConfigError::new(
                        *field,
                        "(set)",
                        "only applies with `percentile`, not with a fixed `delay`",
                    ));
                }
                HedgeDelay::Fixed(d)
            }
            (None, Some(percentile)) => {
                let d = PercentileDelay::new(percentile);
                HedgeDelay::Percentile(PercentileDelay {
                    percentile,
                    min_delay: raw.min_delay.unwrap_or(d.min_delay),
                    fallback_delay: raw.fallback_delay.unwrap_or(d.fallback_delay),
                    min_samples: raw.min_samples.unwrap_or(d.min_samples),
                    window: raw.window.unwrap_or(d.window),
                })
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "delay",
                    "(set with `percentile`)",
                    "give exactly one of `delay` and `percentile`",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "delay",
                    "(missing)",
                    "give exactly one of `delay` and `percentile`",
                ))
            }
        };
        // The ranges are checked by `validate` (as `RetryConfig::validate` calls it), not
        // here: an error while parsing could not name the field's whole path
        // (`policy.<name>.retry.hedge.max_hedged`).
        Ok(HedgeConfig {
            delay,
            max_hedged: raw.max_hedged.unwrap_or(1),
        })
    }
}

impl From<HedgeConfig> for RawHedgeConfig {
    fn from(c: HedgeConfig) -> Self {
        let mut raw = RawHedgeConfig {
            max_hedged: Some(c.max_hedged),
            ..RawHedgeConfig::default()
        };
        match c.delay {
            HedgeDelay::Fixed(d) => raw.delay = Some(d),
            HedgeDelay::Percentile(p) => {
                raw.percentile = Some(p.percentile);
                raw.min_delay = Some(p.min_delay);
                raw.fallback_delay = Some(p.fallback_delay);
                raw.min_samples = Some(p.min_samples);
                raw.window = Some(p.window);
            }
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HedgeConfig, String> {
        toml::from_str::<HedgeConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_fixed_delay_or_a_percentile() {
        let c = parse("delay = \"20ms\"\nmax_hedged = 3").unwrap();
        assert_eq!(
            c,
            HedgeConfig::fixed(Duration::from_millis(20)).max_hedged(3)
        );
        let c = parse("percentile = 0.99\nwindow = \"5s\"\nmin_samples = 20").unwrap();
        let HedgeDelay::Percentile(p) = c.delay else {
            panic!("{c:?}")
        };
        assert_eq!((p.percentile, p.min_samples), (0.99, 20));
        assert_eq!(p.window, Duration::from_secs(5));
        assert_eq!(p.min_delay, Duration::from_millis(1));
        // a zero delay is parallel mode
        let c = parse("delay = \"0s\"\nmax_hedged = 2").unwrap();
        assert_eq!(c, HedgeConfig::fixed(Duration::ZERO).max_hedged(2));
    }

    #[test]
    fn bad_shapes_name_the_field() {
        let err = |t: &str| parse(t).unwrap_err();
        assert!(err("").contains("exactly one of"), "{}", err(""));
        assert!(err("delay = \"1ms\"\npercentile = 0.5").contains("exactly one of"));
        assert!(err("delay = \"1ms\"\nwindow = \"2s\"").contains("`window`"));
        assert!(err("delay = \"1ms\"\nextra = 1").contains("extra"));
    }

    /// Values out of range parse, and `validate` (which `RetryConfig::validate` calls, so
    /// a policy's error names `policy.<name>.retry.hedge.<field>`) refuses them.
    #[test]
    fn bad_values_are_refused_by_validate() {
        for (text, field) in [
            ("percentile = 1.0", "percentile"),
            ("percentile = 0.0", "percentile"),
            ("delay = \"2h\"", "delay"),
            ("delay = \"1ms\"\nmax_hedged = 0", "max_hedged"),
            ("delay = \"1ms\"\nmax_hedged = 9", "max_hedged"),
            ("percentile = 0.5\nwindow = \"10ms\"", "window"),
            ("percentile = 0.5\nmin_samples = 0", "min_samples"),
        ] {
            let config = parse(text).unwrap();
            assert_eq!(config.validate().unwrap_err().field(), field, "{text}");
        }
    }

    #[test]
    fn round_trips_through_toml() {
        for c in [
            HedgeConfig::fixed(Duration::from_millis(7)).max_hedged(2),
            HedgeConfig::fixed(Duration::ZERO).max_hedged(3),
            HedgeConfig::percentile(0.9),
        ] {
            let text = toml::to_string(&c).unwrap();
            assert_eq!(parse(&text).unwrap(), c, "{text}");
        }
    }
}
