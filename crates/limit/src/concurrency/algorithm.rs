//! How the limit moves: Vegas (the default), AIMD and a Gradient2-style latency gradient,
//! as plain data.
//!
//! Nothing here knows about services or time sources: [`LimitState::update`] takes one
//! finished call's latency, the in-flight count when it was admitted and its classified
//! [`Outcome`], and returns the new limit. The limiter feeds it after each call.
//!
//! Outcomes: for AIMD and the gradient, [`Outcome::Success`] is a healthy sample and any
//! [`Outcome::Failure`] an overload signal (a "drop" in Netflix's terms). Vegas reads
//! successes only: it follows queueing, and leaves errors to the breaker and retries.
//! [`Outcome::Fatal`] (a bad request, bad credentials) says nothing about load and leaves
//! every rule alone. A call the service shed ([`LimitState::shed`]: a 429 or 503 with
//! `Retry-After`) is a drop for every rule, Vegas included: the service said so itself.

use std::time::Duration;

use tower_prism_core::Outcome;

use super::algorithm_config::{AimdConfig, GradientConfig, LimitAlgorithm};
use super::config::ConcurrencyConfig;
use super::vegas::Vegas;

/// One finished call, as the algorithm sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// From the call to the inner service until its response (or error).
    pub(crate) latency: Duration,
    /// Requests in flight when this one was admitted (itself included).
    pub(crate) in_flight: u32,
    /// What the call's result meant.
    pub(crate) outcome: Outcome,
}

/// The algorithm's state plus the bounds it keeps the limit in.
#[derive(Debug, Clone)]
pub(crate) struct LimitState {
    estimate: f64,
    min: u32,
    max: u32,
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    Aimd(AimdConfig),
    Gradient(Gradient),
    Vegas(Vegas),
}

#[derive(Debug, Clone)]
struct Gradient {
    config: GradientConfig,
    /// Exponential average of latency in seconds over `long_window` samples.
    long_rtt: f64,
    samples: u32,
}

impl LimitState {
    /// The state for a (validated) config, starting at its initial limit.
    pub(crate) fn new(config: &ConcurrencyConfig) -> Self {
        LimitState {
            estimate: f64::from(config.initial_limit),
            min: config.min_limit,
            max: config.max_limit,
            rule: Rule::new(&config.algorithm),
        }
    }

    /// Whether [`update`](Self::update) looks at [`Sample::latency`] (the gradient, and AIMD
    /// with a latency threshold). When it does not, the limiter skips reading the clock.
    pub(crate) fn uses_latency(&self) -> bool {
        match &self.rule {
            Rule::Aimd(config) => config.latency_threshold.is_some(),
            Rule::Gradient(_) | Rule::Vegas(_) => true,
        }
    }

    /// For AIMD, the latency up to which a success is healthy (`Some(Duration::MAX)` without
    /// a threshold); `None` for the gradient and Vegas. A healthy AIMD success with fewer than half
    /// the limit in flight changes nothing, so the limiter can skip it without the lock.
    pub(crate) fn idle_success_bound(&self) -> Option<Duration> {
        match &self.rule {
            Rule::Aimd(config) => Some(config.latency_threshold.unwrap_or(Duration::MAX)),
            Rule::Gradient(_) | Rule::Vegas(_) => None,
        }
    }

    /// Whether a failed sample can move the limit (not under Vegas, which reads successes
    /// only). When it cannot, the limiter skips failures without the lock.
    pub(crate) fn reads_failures(&self) -> bool {
        !matches!(self.rule, Rule::Vegas(_))
    }

    /// The limit now (the estimate rounded down, within bounds).
    pub(crate) fn limit(&self) -> u32 {
        (self.estimate as u32).clamp(self.min, self.max)
    }

    /// Applies a new config: the current limit is kept, clamped into the new bounds; the
    /// gradient and Vegas keep their latency estimates if the algorithm kind is unchanged.
    pub(crate) fn reconfigure(&mut self, config: &ConcurrencyConfig) {
        self.min = config.min_limit;
        self.max = config.max_limit;
        self.estimate = self
            .estimate
            .clamp(f64::from(self.min), f64::from(self.max));
        self.rule = match (&self.rule, &config.algorithm) {
            (Rule::Gradient(old), LimitAlgorithm::Gradient(new)) => Rule::Gradient(Gradient {
                config: new.clone(),
                ..old.clone()
            }),
            (Rule::Vegas(old), LimitAlgorithm::Vegas(new)) => {
                let mut vegas = old.clone();
                vegas.reconfigure(new);
                Rule::Vegas(vegas)
            }
            (_, algorithm) => Rule::new(algorithm),
        };
    }

    /// The service shed a call, or an attempt of one (a 429 or 503 with `Retry-After`: its
    /// own word that it takes less than it is sent); returns the new limit. Every rule reads
    /// it as a drop in Netflix's terms: AIMD and the gradient as a failure, Vegas with its
    /// one cut per round.
    pub(crate) fn shed(&mut self) -> u32 {
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        let current = self.estimate;
        let next = match &mut self.rule {
            Rule::Aimd(config) => aimd_backoff(config, current),
            Rule::Gradient(g) => g.dropped(current),
            Rule::Vegas(v) => v.shed(current, min),
        };
        self.estimate = next.clamp(min, max);
        self.limit()
    }

    /// Feeds one finished call; returns the new limit.
    pub(crate) fn update(&mut self, sample: Sample) -> u32 {
        if sample.outcome == Outcome::Fatal {
            return self.limit();
        }
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        let current = self.estimate;
        let next = match &mut self.rule {
            Rule::Aimd(config) => {
                let slow = config.latency_threshold.is_some_and(|t| sample.latency > t);
                if sample.outcome.is_failure() || slow {
                    aimd_backoff(config, current)
                } else if f64::from(sample.in_flight) * 2.0 >= current {
                    current + f64::from(config.increase_by)
                } else {
                    // Too little load to tell whether more would be fine.
                    current
                }
            }
            Rule::Gradient(g) => g.next(current, sample),
            Rule::Vegas(v) => v.next(current, min, sample),
        };
        self.estimate = next.clamp(min, max);
        self.limit()
    }
}

impl Rule {
    fn new(algorithm: &LimitAlgorithm) -> Self {
        match algorithm {
            LimitAlgorithm::Aimd(c) => Rule::Aimd(c.clone()),
            LimitAlgorithm::Gradient(c) => Rule::Gradient(Gradient {
                config: c.clone(),
                long_rtt: 0.0,
                samples: 0,
            }),
            LimitAlgorithm::Vegas(c) => Rule::Vegas(Vegas::new(c)),
        }
    }
}

/// AIMD's cut on a drop: by `backoff_ratio`, and always at least one lower, so small limits
/// still back off.
fn aimd_backoff(config: &AimdConfig, current: f64) -> f64 {
    (current * config.backoff_ratio).floor().min(current - 1.0)
}

impl Gradient {
    fn next(&mut self, estimate: f64, sample: Sample) -> f64 {
        let rtt = sample.latency.as_secs_f64().max(1e-6);
        // The long-term average: a plain mean while warming up, then exponential.
        self.samples = self.samples.saturating_add(1);
        let window = f64::from(self.config.long_window);
        let factor = if self.samples <= self.config.long_window.min(10) {
            1.0 / f64::from(self.samples)
        } else {
            2.0 / (window + 1.0)
        };
        self.long_rtt += (rtt - self.long_rtt) * factor;
        // After an overload ends the average lags far behind; pull it back faster.
        if self.long_rtt / rtt > 2.0 {
            self.long_rtt *= 0.95;
        }
        let failed = sample.outcome.is_failure();
        if !failed && f64::from(sample.in_flight) < estimate / 2.0 {
            // Under-used: the latency says nothing about a higher limit.
            return estimate;
        }
        if failed {
            return self.dropped(estimate);
        }
        let gradient = (self.config.tolerance * self.long_rtt / rtt).clamp(0.5, 1.0);
        let target = estimate * gradient + f64::from(self.config.queue_size);
        estimate * (1.0 - self.config.smoothing) + target * self.config.smoothing
    }

    /// A failure or a shed call: the full cut (to half) and no headroom, smoothed, so it
    /// always lowers the limit.
    fn dropped(&self, estimate: f64) -> f64 {
        estimate * (1.0 - self.config.smoothing) + estimate * 0.5 * self.config.smoothing
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::concurrency::VegasConfig;
    use proptest::prelude::*;

    fn cfg(algorithm: LimitAlgorithm, initial: u32, min: u32, max: u32) -> ConcurrencyConfig {
        ConcurrencyConfig {
            initial_limit: initial,
            min_limit: min,
            max_limit: max,
            max_wait: None,
            max_waiters: None,
            algorithm,
        }
    }

    fn ok(ms: u64, in_flight: u32) -> Sample {
        Sample {
            latency: Duration::from_millis(ms),
            in_flight,
            outcome: Outcome::Success,
        }
    }

    fn failed(ms: u64, in_flight: u32) -> Sample {
        Sample {
            outcome: Outcome::RETRYABLE,
            ..ok(ms, in_flight)
        }
    }

    #[test]
    fn aimd_grows_under_load_and_halves_on_failure() {
        let aimd = LimitAlgorithm::Aimd(AimdConfig {
            backoff_ratio: 0.5,
            ..AimdConfig::default()
        });
        let mut s = LimitState::new(&cfg(aimd, 10, 2, 12));
        assert_eq!(s.update(ok(10, 5)), 11);
        assert_eq!(s.update(ok(10, 2)), 11, "little load: no growth");
        assert_eq!(s.update(ok(10, 11)), 12);
        assert_eq!(s.update(ok(10, 12)), 12, "capped at max");
        assert_eq!(s.update(failed(10, 12)), 6);
        assert_eq!(s.update(failed(10, 6)), 3);
        assert_eq!(s.update(failed(10, 3)), 2, "floored at min");
        assert_eq!(s.update(failed(10, 3)), 2);
        let fatal = Sample {
            outcome: Outcome::Fatal,
            ..ok(10, 2)
        };
        assert_eq!(s.update(fatal), 2, "fatal leaves the limit alone");
        assert!(!s.uses_latency());
    }

    #[test]
    fn a_shed_call_is_a_drop_for_every_rule() {
        let aimd = LimitAlgorithm::Aimd(AimdConfig {
            backoff_ratio: 0.5,
            ..AimdConfig::default()
        });
        assert_eq!(LimitState::new(&cfg(aimd, 10, 2, 12)).shed(), 5);
        let gradient = LimitAlgorithm::Gradient(GradientConfig::default());
        assert!(LimitState::new(&cfg(gradient, 100, 2, 200)).shed() < 100);
        // Vegas: by log10(limit), once per round (a round: `limit` successes, or refusals).
        let vegas = LimitAlgorithm::Vegas(VegasConfig::default());
        let mut s = LimitState::new(&cfg(vegas, 20, 2, 200));
        assert_eq!(s.shed(), 18);
        assert_eq!(s.shed(), 18);
        let mut before = 0;
        for _ in 0..18 {
            before = s.update(ok(10, 18));
        }
        assert!(s.shed() < before, "a new round, a new cut");
    }

    #[test]
    fn aimd_small_limits_still_back_off_and_slow_calls_count_as_failures() {
        let aimd = LimitAlgorithm::Aimd(AimdConfig {
            backoff_ratio: 0.9,
            latency_threshold: Some(Duration::from_millis(100)),
            ..AimdConfig::default()
        });
        let mut s = LimitState::new(&cfg(aimd, 5, 1, 10));
        assert_eq!(
            s.update(failed(1, 5)),
            4,
            "5 * 0.9 = 4.5 would round back up"
        );
        assert_eq!(s.update(ok(101, 4)), 3, "slow success is a drop");
        assert_eq!(s.update(ok(100, 3)), 4, "at the threshold is fine");
        assert!(s.uses_latency());
    }

    #[test]
    fn gradient_shrinks_when_latency_rises_and_recovers() {
        let grad = LimitAlgorithm::Gradient(GradientConfig {
            long_window: 20,
            ..GradientConfig::default()
        });
        let mut s = LimitState::new(&cfg(grad, 50, 5, 100));
        for _ in 0..20 {
            s.update(ok(10, 50));
        }
        let steady = s.limit();
        assert!(
            steady >= 50,
            "steady latency grows by the queue headroom: {steady}"
        );
        for _ in 0..10 {
            s.update(ok(60, steady));
        }
        let congested = s.limit();
        assert!(congested < steady, "{congested} !< {steady}");
        for _ in 0..200 {
            let l = s.limit();
            s.update(ok(10, l));
        }
        assert!(
            s.limit() > congested,
            "recovers: {} vs {congested}",
            s.limit()
        );
    }

    #[test]
    fn gradient_failure_cuts_and_idle_holds() {
        let grad = LimitAlgorithm::Gradient(GradientConfig::default());
        let mut s = LimitState::new(&cfg(grad, 40, 1, 100));
        s.update(ok(10, 40));
        let before = s.limit();
        let after = s.update(failed(10, 40));
        assert!(after < before, "{after} !< {before}");
        let held = s.limit();
        assert_eq!(s.update(ok(10, 1)), held, "under half used: unchanged");
    }

    #[test]
    fn reconfigure_clamps_and_switches() {
        let mut s = LimitState::new(&cfg(LimitAlgorithm::default(), 50, 1, 100));
        s.reconfigure(&cfg(LimitAlgorithm::default(), 10, 1, 20));
        assert_eq!(s.limit(), 20);
        s.reconfigure(&cfg(
            LimitAlgorithm::Gradient(GradientConfig::default()),
            30,
            30,
            40,
        ));
        assert_eq!(s.limit(), 30);
    }

    #[test]
    fn only_vegas_ignores_failures() {
        let vegas = LimitState::new(&cfg(LimitAlgorithm::default(), 20, 1, 200));
        assert!(!vegas.reads_failures() && vegas.uses_latency());
        for algorithm in [
            LimitAlgorithm::Aimd(AimdConfig::default()),
            LimitAlgorithm::Gradient(GradientConfig::default()),
        ] {
            assert!(LimitState::new(&cfg(algorithm, 20, 1, 200)).reads_failures());
        }
    }

    fn any_sample() -> impl Strategy<Value = Sample> {
        (0u64..2_000, 0u32..300, 0u8..3).prop_map(|(ms, in_flight, o)| Sample {
            latency: Duration::from_millis(ms),
            in_flight,
            outcome: match o {
                0 => Outcome::Success,
                1 => Outcome::RETRYABLE,
                _ => Outcome::Fatal,
            },
        })
    }

    fn any_algorithm() -> impl Strategy<Value = LimitAlgorithm> {
        prop_oneof![
            (1u32..5, 1u32..5, 2u32..30).prop_map(|(a, extra, r)| {
                LimitAlgorithm::Vegas(VegasConfig {
                    alpha: a,
                    beta: a + extra,
                    probe_rounds: r,
                })
            }),
            (0.05f64..0.99, 1u32..5).prop_map(|(b, i)| LimitAlgorithm::Aimd(AimdConfig {
                backoff_ratio: b,
                increase_by: i,
                latency_threshold: Some(Duration::from_millis(500)),
            })),
            (0.01f64..1.0, 1.0f64..3.0, 1u32..50).prop_map(|(s, t, w)| {
                LimitAlgorithm::Gradient(GradientConfig {
                    smoothing: s,
                    tolerance: t,
                    long_window: w,
                    queue_size: 4,
                })
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the samples, the limit stays within [min, max]; failures never raise it
        /// (Vegas: never move it).
        #[test]
        fn limit_stays_in_bounds(
            algorithm in any_algorithm(),
            min in 1u32..20,
            span in 0u32..200,
            samples in proptest::collection::vec(any_sample(), 1..200),
        ) {
            let max = min + span;
            let config = cfg(algorithm, min + span / 2, min, max);
            prop_assert!(config.validate().is_ok());
            let mut s = LimitState::new(&config);
            for sample in samples {
                let before = s.limit();
                // The limiter's lock-free skip must only skip samples that change nothing.
                let skippable = s.idle_success_bound().is_some_and(|bound| {
                    sample.outcome.is_success()
                        && sample.latency <= bound
                        && sample.in_flight * 2 < before
                });
                let estimate = s.estimate;
                let after = s.update(sample);
                if skippable {
                    prop_assert_eq!(s.estimate, estimate, "a skippable sample moved the limit");
                }
                prop_assert!((min..=max).contains(&after), "{after} outside [{min}, {max}]");
                if sample.outcome.is_failure() {
                    prop_assert!(after <= before, "failure raised {before} to {after}");
                    if matches!(s.rule, Rule::Vegas(_)) {
                        prop_assert_eq!(after, before, "a failure moved the Vegas limit");
                    }
                }
            }
        }
    }
}
