//! The Vegas rule: the limit follows the queue it builds in front of the service.
//!
//! Successes are gathered in rounds of `limit` calls (at least 8; about one round trip). A
//! round's mean latency against the no-load latency (the lowest round mean over the last
//! one to two windows of `probe_rounds` rounds, each taken two standard errors high so that
//! a lucky round does not pass for it) gives, by Little's law, the calls that were waiting
//! rather than served: `queue = in_flight * (1 - no_load / mean)`. For a service of `c`
//! slots behind a FIFO queue, with `limit > c` calls in flight, that is `limit - c`. A call
//! counts for at most twice the no-load latency: a queue lifts every call of a round,
//! while a straggler (a call that slept in a retry's backoff below) must not pass for one.
//!
//! `alpha` and `beta` are per 10 calls served (`in_flight - queue`, at least 10): a service
//! of 30 slots keeps three times the queue of one of 10 or fewer, so that the queue's share
//! of the latency stays the same, and a service of several endpoints with variable service
//! times (where the queue estimate is noisier and some endpoints queue while others idle)
//! is not held below its capacity. The service's concurrency, not the limit, sets the scale:
//! an allowance that grew with the limit would feed on itself.
//!
//! - `queue < alpha`, with at least half the limit in use: the limit grows by one (times
//!   `log10(limit)` above 10);
//! - `queue > beta`: the limit is cut back into the band (`limit - queue + alpha`, at most
//!   halved), and as many samples as were in flight are skipped: those calls were admitted
//!   under the old limit and still show its queue;
//! - every `probe_rounds` rounds, unless a round of the window already ran at half the
//!   limit or less, one round runs at 3/4 of the limit (after the same skip) and the limit
//!   is put back, scaled by how much lower the no-load latency turned out. A queue that
//!   never drains (a start under overload) so cannot pass for the no-load latency for
//!   long. The first probe comes after two rounds and goes lower still for as long as the
//!   latency keeps falling (then nothing trustworthy is known yet); later probes go no
//!   lower than 3/4 of the limit, which would leave a service kept exactly busy short of
//!   work.
//!
//! Failures are ignored (the module docs of `algorithm` say why); so a dead service that
//! answers errors in a millisecond does not drag the no-load latency down, and an outage
//! leaves the limit where it was. A call the service shed (a 429 or 503 with `Retry-After`)
//! is not a failure here but a drop: the limit is cut by `log10(limit)`, once per round (of
//! successes, or of as many refusals).
//!
//! A queue that adds less than [`RESOLUTION`] (1 ms) to the mean latency is no queue: over a
//! service answering in microseconds (in-process, or a cache on the same host), scheduling
//! jitter (a thread switch, a timer tick) lifts a round's mean many times over the no-load
//! latency, and read as a queue it would hold the limit at its floor, refusing calls the
//! service had room for.

use super::algorithm::Sample;
use super::algorithm_config::VegasConfig;

/// The fewest samples in a round, so that a round's mean means something at small limits.
const MIN_ROUND: f64 = 8.0;
/// `alpha` and `beta` are calls queued per this many calls served (and at least themselves).
const PER: f64 = 10.0;
/// A call counts for at most this many times the no-load latency.
const CLIP: f64 = 2.0;
/// Queueing that adds less than this to a round's mean latency (seconds) is not counted.
const RESOLUTION: f64 = 1e-3;
/// A probe round runs at this share of the limit.
const PROBE: f64 = 0.75;
/// A round's mean counts for the no-load latency at this many standard errors above it, so
/// that noise (a lucky round of fast calls) does not pass for a lower no-load latency.
const ERRORS: f64 = 2.0;

#[derive(Debug, Clone)]
pub(crate) struct Vegas {
    config: VegasConfig,
    /// Sum of the round's latencies in seconds, and of their squares.
    round_sum: f64,
    round_squares: f64,
    round_count: u32,
    /// The highest in-flight count (at admission) seen in the round, and their sum.
    round_peak: u32,
    round_in_flight: f64,
    /// Lowest round mean in this window, and in the previous one (seconds; infinite: none).
    window_min: f64,
    previous_min: f64,
    rounds: u32,
    /// Samples still to skip after the limit was lowered: calls admitted under the older,
    /// higher limit (and queued behind each other) say nothing about the new one.
    settle: u32,
    /// During a probe: the limit to go back to once the probe round is measured.
    restore: Option<f64>,
    /// Whether a probe has completed (before, the no-load latency is a first guess).
    warm: bool,
    /// The no-load latency when the probe started (seconds).
    probe_base: f64,
    /// What the first probe's rounds are compared with (seconds): the latency of the round
    /// before it at the full limit, then of each deeper probe round.
    last_probe: f64,
    /// A round of this window ran at half the limit or less (little load): it measured what
    /// a probe would, so the window needs no probe.
    probed: bool,
    /// The limit was cut this round because the service shed a call.
    shed_in_round: bool,
    /// Refusals since that cut: a round's worth of them ends the round for the guard, so a
    /// service that sheds every call (and so never completes a round of successes) keeps
    /// lowering the limit.
    sheds_since_cut: u32,
}

impl Vegas {
    pub(crate) fn new(config: &VegasConfig) -> Self {
        Vegas {
            config: config.clone(),
            round_sum: 0.0,
            round_squares: 0.0,
            round_count: 0,
            round_peak: 0,
            round_in_flight: 0.0,
            window_min: f64::INFINITY,
            previous_min: f64::INFINITY,
            // The first probe comes after two rounds: a start under load must not take its
            // queue for the no-load latency for a whole window.
            rounds: config.probe_rounds.saturating_sub(2),
            settle: 0,
            restore: None,
            probed: false,
            warm: false,
            probe_base: f64::INFINITY,
            last_probe: f64::INFINITY,
            shed_in_round: false,
            sheds_since_cut: 0,
        }
    }

    /// New parameters; the latency estimates are kept.
    pub(crate) fn reconfigure(&mut self, config: &VegasConfig) {
        self.config = config.clone();
    }

    /// The no-load latency estimate in seconds (infinite before the first round).
    fn no_load(&self) -> f64 {
        self.window_min.min(self.previous_min)
    }

    /// The service shed a call (its own word that it takes less than it is sent): the limit
    /// is cut by `log10(limit)` (at least one), Netflix's decrease on a drop, once per round:
    /// a burst of refusals is one signal, as a queue is, and the calls in flight were all
    /// sent under the old limit. A round's worth of refusals (`limit` of them) ends the
    /// round as well: under total shedding the limit keeps falling to its floor, as
    /// Netflix's does, rather than waiting for successes that never come.
    pub(crate) fn shed(&mut self, estimate: f64, min: f64) -> f64 {
        if self.shed_in_round {
            self.sheds_since_cut += 1;
            if f64::from(self.sheds_since_cut) < estimate.floor().max(MIN_ROUND) {
                return estimate;
            }
        }
        self.shed_in_round = true;
        self.sheds_since_cut = 0;
        let cut = estimate.log10().max(1.0);
        // A probe round in progress goes back to the cut limit, not the old one.
        if let Some(restore) = &mut self.restore {
            *restore = (*restore - cut).max(min);
        }
        (estimate - cut).max(min)
    }

    /// Feeds one sample; returns the new (unclamped) estimate of the limit.
    pub(crate) fn next(&mut self, estimate: f64, min: f64, sample: Sample) -> f64 {
        if !sample.outcome.is_success() {
            return estimate;
        }
        if self.settle > 0 {
            self.settle -= 1;
            return estimate;
        }
        // A straggler (a call that slept in a retry's backoff below, a long tail) counts at
        // most `CLIP` times the no-load latency: a queue lifts every call of a round, one
        // outlier must not pass for one.
        let latency = sample
            .latency
            .as_secs_f64()
            .clamp(1e-9, CLIP * self.no_load());
        self.round_sum += latency;
        self.round_squares += latency * latency;
        self.round_count += 1;
        self.round_peak = self.round_peak.max(sample.in_flight);
        self.round_in_flight += f64::from(sample.in_flight);
        if f64::from(self.round_count) < estimate.floor().max(MIN_ROUND) {
            return estimate;
        }
        let count = f64::from(self.round_count);
        let mean = self.round_sum / count;
        let variance = (self.round_squares / count - mean * mean).max(0.0);
        let error = (variance / count).sqrt();
        let in_flight = self.round_in_flight / count;
        let peak = f64::from(self.round_peak);
        self.round_sum = 0.0;
        self.round_squares = 0.0;
        self.round_count = 0;
        self.round_peak = 0;
        self.round_in_flight = 0.0;
        self.shed_in_round = false;
        self.sheds_since_cut = 0;
        let candidate = mean + ERRORS * error;
        let before = self.no_load();
        self.window_min = self.window_min.min(candidate);
        if let Some(restore) = self.restore.take() {
            // The probe round is measured. At the start, well below the last probe's
            // latency: a queue was passing for the no-load latency, probe lower still;
            // otherwise back to where the limit was.
            let deeper = (estimate * PROBE).floor().max(min);
            // The first probe knows no trustworthy no-load latency (the first rounds may
            // have queued): it goes lower for as long as the latency keeps falling, from
            // the round before it on (a start with room to spare stops at once). Once
            // warm, a probe that finds a lower latency rescales the limit instead (below):
            // going lower still would leave the service short of work for a round, and a
            // queue the rescaled limit still allows shows as one in the next rounds.
            let reference = if self.warm { before } else { self.last_probe };
            self.last_probe = candidate;
            if !self.warm && candidate < reference * 0.9 && deeper < estimate {
                self.restore = Some(restore);
                self.settle = peak as u32;
                return deeper;
            }
            self.warm = true;
            // The limit was set against the old no-load latency: if the probe found a lower
            // one, the queue it allowed was larger than it looked; scale it down to match.
            let found = self.no_load();
            return if found < self.probe_base {
                (restore * found / self.probe_base).max(min)
            } else {
                restore
            };
        }
        self.probed |= in_flight <= estimate * 0.5;
        self.rounds += 1;
        if self.rounds >= self.config.probe_rounds {
            self.rounds = 0;
            let probe = (estimate * PROBE).floor().max(min);
            // The first probe always runs: the first rounds' low load was the start's.
            let probed = std::mem::take(&mut self.probed) && self.warm;
            let base_in_use = self.no_load();
            self.previous_min = self.window_min;
            self.window_min = f64::INFINITY;
            if !probed && probe < estimate {
                self.restore = Some(estimate);
                self.probe_base = base_in_use;
                if !self.warm {
                    self.last_probe = candidate;
                }
                self.settle = peak as u32;
                return probe;
            }
        }
        // Little's law: of the calls in flight, this many were waiting rather than served.
        let no_load = self.no_load();
        let in_use = in_flight.min(estimate);
        let queue = if mean - no_load < RESOLUTION {
            0.0
        } else {
            in_use * (1.0 - no_load / mean)
        };
        // The allowance is `alpha` to `beta` calls per `PER` being served (at least `alpha`
        // to `beta`): scaled with the service's own concurrency, not with the limit (which
        // would feed on itself), so the queue's share of the latency is the same for a
        // service of 8 slots as for three of 10 with variable service times.
        let served = (in_use - queue).max(PER);
        let (alpha, beta) = (
            f64::from(self.config.alpha) * served / PER,
            f64::from(self.config.beta) * served / PER,
        );
        let scale = estimate.log10().max(1.0);
        if queue > beta {
            // Back into the band, at most halved; the next round still shows the old queue.
            self.settle = peak as u32;
            (estimate - queue + alpha).max(estimate / 2.0)
        } else if queue < alpha && peak * 2.0 >= estimate {
            estimate + scale
        } else {
            estimate
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use tower_prism_core::Outcome;

    use super::super::algorithm::{LimitState, Sample};
    use super::super::config::ConcurrencyConfig;

    fn state(initial: u32) -> LimitState {
        LimitState::new(&ConcurrencyConfig {
            initial_limit: initial,
            ..ConcurrencyConfig::default()
        })
    }

    /// A service of `slots` slots and `service` per call behind a FIFO queue, kept full:
    /// each call is admitted at the limit and waits for the calls ahead of it.
    fn overloaded(s: &mut LimitState, slots: u32, service: Duration, calls: u32) -> Vec<u32> {
        (0..calls)
            .map(|_| {
                let in_flight = s.limit();
                let latency = service * in_flight.max(slots) / slots;
                s.update(Sample {
                    latency,
                    in_flight,
                    outcome: Outcome::Success,
                })
            })
            .collect()
    }

    fn mean(limits: &[u32]) -> f64 {
        limits.iter().map(|&l| f64::from(l)).sum::<f64>() / limits.len() as f64
    }

    #[test]
    fn settles_at_the_capacity_plus_a_short_queue() {
        let mut s = state(20);
        let limits = overloaded(&mut s, 8, Duration::from_millis(20), 20_000);
        let tail = &limits[10_000..];
        let (low, high) = (*tail.iter().min().unwrap(), *tail.iter().max().unwrap());
        assert!(
            mean(tail) >= 9.0 && mean(tail) <= 13.0,
            "mean {}",
            mean(tail)
        );
        assert!(low >= 5 && high <= 16, "between {low} and {high}");
    }

    #[test]
    fn a_start_far_above_the_capacity_comes_down() {
        let mut s = state(200);
        let limits = overloaded(&mut s, 8, Duration::from_millis(20), 20_000);
        let tail = &limits[10_000..];
        assert!(mean(tail) <= 13.0, "mean {}", mean(tail));
    }

    #[test]
    fn grows_to_a_larger_capacity_and_holds_when_idle() {
        let mut s = state(20);
        let limits = overloaded(&mut s, 100, Duration::from_millis(20), 50_000);
        let tail = &limits[40_000..];
        // The queue kept is `alpha` to `beta` (2 to 4) per 10 calls served: 20 to 40 here.
        assert!(
            mean(tail) >= 100.0 && mean(tail) <= 140.0,
            "mean {}",
            mean(tail)
        );
        // Little load: nothing to learn about a higher limit.
        let mut s = state(20);
        for _ in 0..10_000 {
            s.update(Sample {
                latency: Duration::from_millis(20),
                in_flight: 3,
                outcome: Outcome::Success,
            });
        }
        assert!(s.limit() >= 20, "limit {}", s.limit());
    }

    /// A start with room to spare (no queue at the initial limit): the first probe finds
    /// the latency it had before and goes no lower than 3/4 of the limit. Each step lower
    /// refuses calls the service had room for, at every cold start.
    #[test]
    fn a_start_without_a_queue_probes_once() {
        let mut s = state(20);
        let limits = overloaded(&mut s, 100, Duration::from_millis(20), 500);
        let lowest = *limits.iter().min().unwrap();
        assert_eq!(lowest, 15, "limits {limits:?}");
    }

    /// A dead service answering errors in 1 ms, or hanging until a timeout, leaves the limit
    /// where it was, and its fast errors do not pass for the no-load latency afterwards.
    #[test]
    fn failures_move_nothing() {
        let mut s = state(20);
        overloaded(&mut s, 8, Duration::from_millis(20), 5_000);
        let before = s.limit();
        for latency in [Duration::from_millis(1), Duration::from_secs(1)] {
            for in_flight in [1, before] {
                for _ in 0..1_000 {
                    let failed = Sample {
                        latency,
                        in_flight,
                        outcome: Outcome::RETRYABLE,
                    };
                    assert_eq!(s.update(failed), before);
                }
            }
        }
        let limits = overloaded(&mut s, 8, Duration::from_millis(20), 5_000);
        assert!(mean(&limits) >= 9.0, "mean {}", mean(&limits));
    }

    /// A service that became twice as slow for good: the limit first drops (the latency
    /// looks like a queue), then the new no-load latency is learnt and it comes back.
    #[test]
    fn a_slower_service_is_relearnt() {
        let mut s = state(20);
        overloaded(&mut s, 8, Duration::from_millis(20), 5_000);
        let limits = overloaded(&mut s, 8, Duration::from_millis(40), 20_000);
        let tail = &limits[10_000..];
        assert!(
            mean(tail) >= 9.0 && mean(tail) <= 13.0,
            "mean {}",
            mean(tail)
        );
        // Ten times slower: beyond the clipping of stragglers, learnt over a few windows.
        let limits = overloaded(&mut s, 8, Duration::from_millis(400), 20_000);
        let tail = &limits[10_000..];
        assert!(
            mean(tail) >= 9.0 && mean(tail) <= 13.0,
            "mean {}",
            mean(tail)
        );
    }

    /// A call now and then far slower than the rest (retried below after a long backoff)
    /// does not pass for a queue. (Slow calls in every round are part of the no-load
    /// latency, measured as round means.)
    #[test]
    fn stragglers_are_not_a_queue() {
        let mut s = state(20);
        let mut lowered = 0;
        for i in 0..10_000u32 {
            let latency = if i % 50 == 0 {
                Duration::from_secs(2)
            } else {
                Duration::from_millis(20)
            };
            s.update(Sample {
                latency,
                in_flight: 10,
                outcome: Outcome::Success,
            });
            // Only the short probes lower it.
            lowered += u32::from(s.limit() < 20);
        }
        assert!(lowered < 1_000, "lowered for {lowered} samples of 10,000");
        assert!(s.limit() >= 20, "limit {}", s.limit());
    }

    /// A service answering in microseconds, whose round means jitter far above its no-load
    /// latency (a thread switch, a timer tick), is not held down: that jitter is not a
    /// queue worth refusing calls for.
    #[test]
    fn microsecond_jitter_is_not_a_queue() {
        let mut s = state(20);
        let mut lowest = u32::MAX;
        for i in 0..20_000u32 {
            // stretches of calls slowed together (the thread was descheduled), then fast
            let latency = if (i / 100) % 2 == 0 {
                Duration::from_micros(50)
            } else {
                Duration::from_micros(5)
            };
            let in_flight = s.limit();
            s.update(Sample {
                latency,
                in_flight,
                outcome: Outcome::Success,
            });
            if i > 1_000 {
                lowest = lowest.min(s.limit());
            }
        }
        // only the short probes (3/4 of the limit) go below where it started
        assert!(lowest >= 15, "fell to {lowest}");
        assert!(s.limit() >= 20, "limit {}", s.limit());
    }
}
