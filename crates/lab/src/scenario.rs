//! The named scenarios: a seed, a duration, an offered-load curve and an upstream with its
//! fault schedule.

use std::time::Duration;

use crate::upstream::{Fault, FaultKind, Shedding, UpstreamConfig};

/// The offered load, as a multiple of the upstream's healthy capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// The same multiple for the whole run.
    Constant(f64),
    /// From one multiple to another, linearly over the run.
    Ramp {
        /// At the start.
        from: f64,
        /// At the end.
        to: f64,
    },
}

impl Load {
    /// The multiple at `fraction` (0 to 1) of the run.
    pub fn at(&self, fraction: f64) -> f64 {
        match *self {
            Load::Constant(m) => m,
            Load::Ramp { from, to } => from + (to - from) * fraction.clamp(0.0, 1.0),
        }
    }
}

/// Clients of the key flood: many well-behaved ones and one minting a new key per call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyFlood {
    /// Well-behaved clients, sharing the scenario's offered load evenly.
    pub clients: u32,
    /// The abusive client's rate, as a multiple of the upstream's capacity.
    pub abuser: f64,
    /// The per-key limit the protected stacks enforce (requests per second per key).
    pub per_key_rate: u32,
}

/// The set a scenario belongs to; it decides the stacks' settings and how recovery is
/// measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// The overload and fault lab (issue 11): three endpoints x 10 slots, every stage.
    Lab,
    /// The adaptive defaults (issue 15): one endpoint of 8 slots x 20 ms, a policy that
    /// sets a concurrency limit, a circuit breaker and a retry stage and leaves their
    /// settings at the defaults.
    Defaults,
}

impl Suite {
    /// The suite's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Lab => "all",
            Suite::Defaults => "defaults",
        }
    }

    /// The suite's scenarios, in the report's order.
    pub fn scenarios(self) -> Vec<Scenario> {
        match self {
            Suite::Lab => all(),
            Suite::Defaults => defaults(),
        }
    }
}

/// One named scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// What it shows, in a few words.
    pub title: &'static str,
    /// The seed of every random draw.
    pub seed: u64,
    /// How long the load runs.
    pub duration: Duration,
    /// The well-behaved offered load.
    pub load: Load,
    /// The upstream and its faults.
    pub upstream: UpstreamConfig,
    /// The fault window measured apart (amplification inside it, recovery after it).
    pub fault_window: Option<(Duration, Duration)>,
    /// The key flood's clients, for that scenario.
    pub key_flood: Option<KeyFlood>,
    /// The suite it belongs to.
    pub suite: Suite,
}

/// The client's deadline: a success later than this is not goodput.
pub const DEADLINE: Duration = Duration::from_secs(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The healthy upstream every scenario starts from: 3 endpoints x 10 slots, 30 ms mean
/// service (1,000 requests/s), queues of up to 1,000 requests per endpoint.
pub fn base_upstream() -> UpstreamConfig {
    UpstreamConfig {
        endpoints: 3,
        slots: 10,
        mean_service: Duration::from_millis(30),
        sigma: 0.5,
        shedding: Shedding {
            queue_depth: 1000,
            retry_after: None,
        },
        faults: Vec::new(),
    }
}

fn with_faults(faults: Vec<Fault>) -> UpstreamConfig {
    UpstreamConfig {
        faults,
        ..base_upstream()
    }
}

fn fault(endpoints: &[usize], from: u64, until: u64, kind: FaultKind) -> Fault {
    Fault {
        endpoints: endpoints.to_vec(),
        from: secs(from),
        until: secs(until),
        kind,
    }
}

/// Every scenario, in the report's order.
pub fn all() -> Vec<Scenario> {
    let run = secs(60);
    vec![
        Scenario {
            name: "overload",
            title: "overload ramp from 0.5x to 3x capacity",
            seed: 1,
            duration: run,
            load: Load::Ramp { from: 0.5, to: 3.0 },
            upstream: base_upstream(),
            fault_window: None,
            suite: Suite::Lab,
            key_flood: None,
        },
        Scenario {
            name: "slow-endpoint",
            title: "one of three endpoints 10x slower (20 s to 40 s)",
            seed: 2,
            duration: run,
            load: Load::Constant(0.7),
            upstream: with_faults(vec![fault(&[0], 20, 40, FaultKind::Slow(10.0))]),
            fault_window: Some((secs(20), secs(40))),
            suite: Suite::Lab,
            key_flood: None,
        },
        Scenario {
            name: "failing-endpoint",
            title: "one of three endpoints fails every call (20 s to 40 s)",
            seed: 3,
            duration: run,
            load: Load::Constant(0.6),
            upstream: with_faults(vec![fault(&[0], 20, 40, FaultKind::FailEvery)]),
            fault_window: Some((secs(20), secs(40))),
            suite: Suite::Lab,
            key_flood: None,
        },
        Scenario {
            name: "outage",
            title: "all endpoints down for 10 s (20 s to 30 s), then recovery",
            seed: 4,
            duration: secs(45),
            load: Load::Constant(0.7),
            upstream: with_faults(vec![fault(&[0, 1, 2], 20, 30, FaultKind::Down)]),
            fault_window: Some((secs(20), secs(30))),
            suite: Suite::Lab,
            key_flood: None,
        },
        Scenario {
            name: "brownout",
            title: "25 % of calls fail at random (20 s to 40 s)",
            seed: 5,
            duration: run,
            load: Load::Constant(0.7),
            upstream: with_faults(vec![fault(&[0, 1, 2], 20, 40, FaultKind::FailRandom(0.25))]),
            fault_window: Some((secs(20), secs(40))),
            suite: Suite::Lab,
            key_flood: None,
        },
        Scenario {
            name: "shedding",
            title: "1.5x load; the upstream sheds with 503 + Retry-After: 1 beyond 20 queued",
            seed: 6,
            duration: secs(40),
            load: Load::Constant(1.5),
            upstream: UpstreamConfig {
                shedding: Shedding {
                    queue_depth: 20,
                    retry_after: Some(secs(1)),
                },
                ..base_upstream()
            },
            fault_window: None,
            suite: Suite::Lab,
            key_flood: None,
        },
        Scenario {
            name: "key-flood",
            title: "1,000 clients at 0.6x capacity and one minting keys at 3x",
            seed: 7,
            duration: secs(40),
            load: Load::Constant(0.6),
            upstream: base_upstream(),
            fault_window: None,
            suite: Suite::Lab,
            key_flood: Some(KeyFlood {
                clients: 1000,
                abuser: 3.0,
                per_key_rate: 5,
            }),
        },
    ]
}

/// The upstream of issue 15: one endpoint of 8 slots, 20 ms service time every call
/// (400 requests/s), a FIFO queue that never sheds on its own.
pub fn defaults_upstream() -> UpstreamConfig {
    UpstreamConfig {
        endpoints: 1,
        slots: 8,
        mean_service: Duration::from_millis(20),
        sigma: 0.0,
        shedding: Shedding {
            queue_depth: usize::MAX,
            retry_after: None,
        },
        faults: Vec::new(),
    }
}

fn defaults_scenario(
    name: &'static str,
    title: &'static str,
    seed: u64,
    duration: u64,
    load: f64,
    fault: Option<Fault>,
) -> Scenario {
    let fault_window = fault.as_ref().map(|f| (f.from, f.until));
    Scenario {
        name,
        title,
        seed,
        duration: secs(duration),
        load: Load::Constant(load),
        upstream: UpstreamConfig {
            faults: fault.into_iter().collect(),
            ..defaults_upstream()
        },
        fault_window,
        key_flood: None,
        suite: Suite::Defaults,
    }
}

/// The scenarios of issue 15 (`-- defaults`), over [`defaults_upstream`]: an unloaded
/// baseline, then 320 requests/s (0.8x) through a full outage, a brownout and polite
/// shedding, and 800 requests/s (2x) of plain overload.
pub fn defaults() -> Vec<Scenario> {
    vec![
        defaults_scenario(
            "unloaded",
            "100 requests/s (0.25x), no fault: the baseline of the p99 ratio",
            11,
            20,
            0.25,
            None,
        ),
        defaults_scenario(
            "full-outage",
            "320 requests/s; the upstream refuses every call from 10 s to 20 s",
            12,
            30,
            0.8,
            Some(fault(&[0], 10, 20, FaultKind::Down)),
        ),
        defaults_scenario(
            "overload-2x",
            "800 requests/s, twice the capacity, no fault",
            13,
            20,
            2.0,
            None,
        ),
        defaults_scenario(
            "brownout-25",
            "320 requests/s; 25 % of calls fail at random from 5 s to 25 s",
            14,
            30,
            0.8,
            Some(fault(&[0], 5, 25, FaultKind::FailRandom(0.25))),
        ),
        defaults_scenario(
            "polite-shedding",
            "320 requests/s; every call answered 503 + Retry-After: 2 from 5 s to 15 s",
            15,
            30,
            0.8,
            Some(fault(&[0], 5, 15, FaultKind::Shed(secs(2)))),
        ),
    ]
}

/// A short, small version of a scenario for the smoke test: the same shape, `duration`
/// long, with its fault window scaled to fit.
pub fn shortened(scenario: &Scenario, duration: Duration) -> Scenario {
    let scale = duration.as_secs_f64() / scenario.duration.as_secs_f64();
    let scaled = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() * scale);
    let mut short = scenario.clone();
    short.duration = duration;
    short.fault_window = scenario.fault_window.map(|(a, b)| (scaled(a), scaled(b)));
    for f in &mut short.upstream.faults {
        f.from = scaled(f.from);
        f.until = scaled(f.until);
    }
    short
}
