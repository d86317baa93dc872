//! [`Plan`]: a config turned into what a call needs to decide its faults (thresholds on a
//! random draw), packed into words for the [`SeqCell`](crate::seqlock::SeqCell), and the
//! pure decision of one call's faults. No tower types here.

use std::time::Duration;

use tower_prism_core::internal::{mix64, nanos};

use crate::config::FaultConfig;
use crate::faults::{Answer, Delay, MAX_FAULT_LATENCY};

/// Draws are compared on their top 53 bits: a rate `r` becomes the threshold `r * 2^53`,
/// exact for `r = 1` (every draw is below it) and `r = 0` (none is).
const DRAW_BITS: u32 = 53;
const DRAW_SCALE: f64 = (1u64 << DRAW_BITS) as f64;

/// z of the normal distribution's 99th percentile: a lognormal's sigma is
/// `ln(p99 / median) / Z_99`.
const Z_99: f64 = 2.326_347_874_040_841;

/// The words a plan packs into.
pub(crate) const WORDS: usize = 8;

/// A call's exclusive fault: at most one per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exclusive {
    Error,
    Abort,
    /// An HTTP status.
    Status(u16),
    /// A gRPC status.
    Grpc(u16),
}

/// What one call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Decision {
    /// Wait this long before going on.
    pub delay: Option<Duration>,
    /// Then fail (or answer) this way instead of calling the service.
    pub fault: Option<Exclusive>,
}

/// The latency fault's shape, in nanoseconds (lognormal as `ln` of the median and sigma).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Fixed(u64),
    Uniform { min: u64, span: u64 },
    LogNormal { mu: f64, sigma: f64 },
}

/// A config ready for the hot path: cumulative thresholds on a 53-bit draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    /// A draw below this is an error.
    error_below: u64,
    /// Below this (and not an error): an abort.
    abort_below: u64,
    /// Below this (and not an error or abort): a status.
    status_below: u64,
    status: u16,
    /// Whether `status` is a gRPC code (else an HTTP one).
    grpc: bool,
    /// At most this many faulted calls at once (`u32::MAX`: no limit).
    max_active: u32,
    /// A second draw below this is a delay.
    latency_below: u64,
    shape: Shape,
}

/// `rate` as a threshold on a 53-bit draw.
fn threshold(rate: f64) -> u64 {
    // `as` saturates; a rate sum a hair over 1 (allowed for rounding) stays at 2^53.
    ((rate.clamp(0.0, 1.0) * DRAW_SCALE) as u64).min(1 << DRAW_BITS)
}

impl Plan {
    /// The plan that injects nothing.
    pub(crate) const NOTHING: Plan = Plan {
        error_below: 0,
        abort_below: 0,
        status_below: 0,
        status: 0,
        grpc: false,
        max_active: u32::MAX,
        latency_below: 0,
        shape: Shape::Fixed(0),
    };

    /// The plan of a valid `config`; a disabled config injects nothing.
    pub(crate) fn from_config(config: &FaultConfig) -> Plan {
        if !config.enabled {
            return Plan::NOTHING;
        }
        let (status_rate, status, grpc) = match config.status.map(|s| (s.rate, s.answer())) {
            Some((rate, Ok(Answer::Http(code)))) => (rate, code, false),
            Some((rate, Ok(Answer::Grpc(code)))) => (rate, u16::from(code as u8), true),
            _ => (0.0, 0, false),
        };
        let (latency_rate, shape) = match config.latency {
            Some(latency) => match latency.delay() {
                Ok(delay) => (latency.rate, Shape::of(delay)),
                Err(_) => (0.0, Shape::Fixed(0)),
            },
            None => (0.0, Shape::Fixed(0)),
        };
        Plan {
            error_below: threshold(config.error),
            abort_below: threshold(config.error + config.abort),
            status_below: threshold(config.error + config.abort + status_rate),
            status,
            grpc,
            max_active: config.max_active_faults.unwrap_or(u32::MAX),
            latency_below: threshold(latency_rate),
            shape,
        }
    }

    /// At most this many calls with a fault at once.
    pub(crate) fn max_active(&self) -> u64 {
        u64::from(self.max_active)
    }

    /// Whether any call could get a fault.
    pub(crate) fn injects(&self) -> bool {
        self.status_below > 0 || self.latency_below > 0
    }

    /// The fault of the call whose draws are `exclusive` and `latency` (two independent
    /// random words).
    pub(crate) fn decide(&self, exclusive: u64, latency: u64) -> Decision {
        let x = exclusive >> (64 - DRAW_BITS);
        let fault = if x < self.error_below {
            Some(Exclusive::Error)
        } else if x < self.abort_below {
            Some(Exclusive::Abort)
        } else if x < self.status_below {
            Some(if self.grpc {
                Exclusive::Grpc(self.status)
            } else {
                Exclusive::Status(self.status)
            })
        } else {
            None
        };
        let y = latency >> (64 - DRAW_BITS);
        let delay = (y < self.latency_below).then(|| {
            // Given y < t, y / t is uniform in [0, 1): the same draw picks the delay.
            self.shape.delay(y, self.latency_below, latency)
        });
        Decision { delay, fault }
    }

    /// The plan as words, for the seqlock.
    pub(crate) fn encode(&self) -> [u64; WORDS] {
        let (kind, a, b) = match self.shape {
            Shape::Fixed(d) => (0, d, 0),
            Shape::Uniform { min, span } => (1, min, span),
            Shape::LogNormal { mu, sigma } => (2, mu.to_bits(), sigma.to_bits()),
        };
        [
            self.error_below,
            self.abort_below,
            self.status_below,
            u64::from(self.status) | u64::from(self.grpc) << 16 | u64::from(self.max_active) << 32,
            self.latency_below,
            kind,
            a,
            b,
        ]
    }

    /// The plan [`encode`](Self::encode) wrote.
    pub(crate) fn decode(w: [u64; WORDS]) -> Plan {
        let shape = match w[5] {
            1 => Shape::Uniform {
                min: w[6],
                span: w[7],
            },
            2 => Shape::LogNormal {
                mu: f64::from_bits(w[6]),
                sigma: f64::from_bits(w[7]),
            },
            _ => Shape::Fixed(w[6]),
        };
        Plan {
            error_below: w[0],
            abort_below: w[1],
            status_below: w[2],
            status: w[3] as u16,
            grpc: w[3] >> 16 & 1 == 1,
            max_active: (w[3] >> 32) as u32,
            latency_below: w[4],
            shape,
        }
    }
}

impl Shape {
    fn of(delay: Delay) -> Shape {
        match delay {
            Delay::Fixed(d) => Shape::Fixed(nanos(d)),
            Delay::Uniform { min, max } => Shape::Uniform {
                min: nanos(min),
                span: nanos(max) - nanos(min),
            },
            Delay::LogNormal { median, p99 } => {
                let median = nanos(median) as f64;
                Shape::LogNormal {
                    mu: median.ln(),
                    sigma: (nanos(p99) as f64 / median).ln() / Z_99,
                }
            }
        }
    }

    /// The delay for a draw `y < below` (53 bits); `word` is the whole draw, from which
    /// a lognormal takes its second uniform.
    fn delay(&self, y: u64, below: u64, word: u64) -> Duration {
        let nanos = match *self {
            Shape::Fixed(d) => d,
            Shape::Uniform { min, span } => {
                // y / below in [0, 1) scaled to [0, span], in integers: exact and even.
                let offset = u128::from(y) * (u128::from(span) + 1) / u128::from(below);
                min + u64::try_from(offset).unwrap_or(span).min(span)
            }
            Shape::LogNormal { mu, sigma } => {
                // Box-Muller: two uniforms, one from this draw, one mixed from it.
                let u1 = 1.0 - y as f64 / below as f64; // in (0, 1]: ln is finite
                let u2 = (mix64(word) >> (64 - DRAW_BITS)) as f64 / DRAW_SCALE;
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let cap = nanos(MAX_FAULT_LATENCY) as f64;
                // NaN (never expected) and overflow both land on the cap's side safely.
                (mu + sigma * z).exp().clamp(0.0, cap) as u64
            }
        };
        Duration::from_nanos(nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{LatencyFault, StatusFault};
    use tower_prism_core::GrpcCode;

    const MS: Duration = Duration::from_millis(1);

    fn draws(n: u64, seed: u64) -> impl Iterator<Item = (u64, u64)> {
        (0..n).map(move |i| (mix64(seed ^ (2 * i)), mix64(seed ^ (2 * i + 1))))
    }

    #[test]
    fn nothing_and_disabled_inject_nothing() {
        assert!(!Plan::NOTHING.injects());
        let off = FaultConfig::builder()
            .enabled(false)
            .error(1.0)
            .build()
            .unwrap();
        assert_eq!(Plan::from_config(&off), Plan::NOTHING);
        for (a, b) in [(0, 0), (u64::MAX, u64::MAX), (1 << 63, 5)] {
            assert_eq!(Plan::NOTHING.decide(a, b), Decision::default());
        }
    }

    #[test]
    fn rate_one_hits_every_draw_and_rate_zero_none() {
        let all = Plan::from_config(&FaultConfig::builder().abort(1.0).build().unwrap());
        for (a, b) in [(0, 0), (u64::MAX, u64::MAX)] {
            assert_eq!(all.decide(a, b).fault, Some(Exclusive::Abort));
            assert_eq!(all.decide(a, b).delay, None);
        }
    }

    #[test]
    fn exclusive_faults_split_the_draw() {
        let config = FaultConfig::builder()
            .error(0.2)
            .abort(0.3)
            .status(StatusFault::new(0.1, 503))
            .build()
            .unwrap();
        let plan = Plan::from_config(&config);
        let mut counts = [0u32; 4];
        for (a, b) in draws(100_000, 1) {
            let i = match plan.decide(a, b).fault {
                Some(Exclusive::Error) => 0,
                Some(Exclusive::Abort) => 1,
                Some(Exclusive::Status(503)) => 2,
                Some(other) => panic!("{other:?}"),
                None => 3,
            };
            counts[i] += 1;
        }
        for (count, rate) in counts.iter().zip([0.2, 0.3, 0.1, 0.4]) {
            let share = f64::from(*count) / 100_000.0;
            assert!((share - rate).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn uniform_delays_stay_within_bounds_and_reach_both_ends() {
        let latency = LatencyFault::uniform(1.0, MS * 10, MS * 20);
        let plan = Plan::from_config(&FaultConfig::builder().latency(latency).build().unwrap());
        let delays: Vec<Duration> = draws(10_000, 2)
            .map(|(a, b)| plan.decide(a, b).delay.unwrap())
            .collect();
        assert!(delays.iter().all(|d| (MS * 10..=MS * 20).contains(d)));
        assert!(delays.iter().any(|d| *d < MS * 11));
        assert!(delays.iter().any(|d| *d > MS * 19));
        // the two ends of the draw map to the two ends of the range
        assert_eq!(plan.decide(0, 0).delay, Some(MS * 10));
        assert_eq!(plan.decide(0, u64::MAX).delay, Some(MS * 20));
    }

    #[test]
    fn lognormal_delays_have_the_configured_median_and_p99() {
        let latency = LatencyFault::lognormal(1.0, MS * 50, MS * 400);
        let plan = Plan::from_config(&FaultConfig::builder().latency(latency).build().unwrap());
        let mut delays: Vec<Duration> = draws(20_000, 3)
            .map(|(a, b)| plan.decide(a, b).delay.unwrap())
            .collect();
        delays.sort();
        let median = delays[10_000].as_secs_f64();
        let p99 = delays[19_800].as_secs_f64();
        assert!((median / 0.050 - 1.0).abs() < 0.05, "median {median}");
        assert!((p99 / 0.400 - 1.0).abs() < 0.15, "p99 {p99}");
    }

    #[test]
    fn encode_decode_round_trips() {
        for latency in [
            LatencyFault::fixed(0.5, MS),
            LatencyFault::uniform(0.5, MS, MS * 3),
            LatencyFault::lognormal(0.5, MS, MS * 3),
        ] {
            for status in [
                StatusFault::new(0.2, 429),
                StatusFault::grpc(0.2, GrpcCode::Unauthenticated),
            ] {
                let config = FaultConfig::builder()
                    .error(0.1)
                    .status(status)
                    .latency(latency)
                    .max_active_faults(7)
                    .build()
                    .unwrap();
                let plan = Plan::from_config(&config);
                assert_eq!(Plan::decode(plan.encode()), plan);
            }
        }
    }

    #[test]
    fn a_grpc_status_is_drawn_as_one() {
        let config = FaultConfig::builder()
            .status(StatusFault::grpc(1.0, GrpcCode::Unavailable))
            .build()
            .unwrap();
        let plan = Plan::from_config(&config);
        assert_eq!(plan.decide(0, 0).fault, Some(Exclusive::Grpc(14)));
    }
}
