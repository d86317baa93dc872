//! The breaker's state machine: lock-free in the closed state, brief locking on transitions.
//!
//! No tower types here: [`Breaker`] is driven by `acquire` / `record` / `release` with explicit
//! instants, so it is unit-, proptest- and loom-testable on its own.

use std::fmt;
use std::time::Duration;

#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

use metrics::{Counter, Gauge, Histogram};
use tokio::time::Instant;
use tower_prism_core::metrics::{breaker as m, LABEL_FROM, LABEL_NAME, LABEL_OUTCOME, LABEL_TO};
use tower_prism_core::sync::{
    Arc, AtomicBool, AtomicU32, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use tower_prism_core::{ConfigError, HealthSignal, Moment, Outcome, TimeSource};

use crate::config::{BreakerConfig, Window};
use crate::window::{CountWindow, Counts, SlidingWindow, TimeWindow};

/// A breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A few probes pass; their outcomes close or re-open the breaker.
    HalfOpen,
    /// Opened by hand ([`Breaker::force_open`]); stays open until [`Breaker::reset`].
    ForcedOpen,
    /// Switched off by hand ([`Breaker::disable`]): every call passes, nothing is counted.
    Disabled,
}

impl State {
    const ALL: [State; 5] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ];

    /// The state's number in the `prism_breaker_state` gauge (0 closed ... 4 disabled).
    pub fn as_number(self) -> u8 {
        self as u8
    }

    /// A short label: `closed`, `open`, `half_open`, `forced_open`, `disabled`.
    pub fn as_label(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }

    fn from_number(n: u64) -> State {
        State::ALL[(n as usize).min(4)]
    }

    fn rejects(self) -> bool {
        matches!(self, State::Open | State::ForcedOpen)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_label())
    }
}

/// What [`Breaker::snapshot`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSnapshot {
    /// The current state.
    pub state: State,
    /// Calls in the sliding window (while half-open: probes finished).
    pub calls: u32,
    /// Of those, failures.
    pub failures: u32,
    /// Of those, slow calls.
    pub slow_calls: u32,
    /// `failures / calls` (0 with no calls).
    pub failure_rate: f64,
    /// `slow_calls / calls` (0 with no calls).
    pub slow_call_rate: f64,
    /// Failures in a row right now.
    pub consecutive_failures: u32,
    /// Probes admitted in the current half-open round.
    pub probes_admitted: u32,
    /// While open: time left before probing. While forced open: the wait duration.
    pub retry_after: Option<Duration>,
}

// State word: generation << 8 | state number.
fn pack_state(generation: u64, state: State) -> u64 {
    (generation << 8) | u64::from(state.as_number())
}
fn unpack_state(word: u64) -> (u64, State) {
    (word >> 8, State::from_number(word & 0xff))
}

// Half-open word: gen tag (24 bits) << 40 | admitted << 30 | successes << 20 | failures << 10 | slow.
const HO_BITS: u32 = 10;
const HO_MASK: u64 = (1 << HO_BITS) - 1;
const HO_TAG_SHIFT: u32 = 40;
const HO_TAG_MASK: u64 = (1 << 24) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probes {
    tag: u64,
    admitted: u64,
    successes: u64,
    failures: u64,
    slow: u64,
}

impl Probes {
    fn fresh(generation: u64) -> Self {
        Probes {
            tag: generation & HO_TAG_MASK,
            admitted: 0,
            successes: 0,
            failures: 0,
            slow: 0,
        }
    }
    fn unpack(w: u64) -> Self {
        Probes {
            tag: w >> HO_TAG_SHIFT,
            admitted: (w >> (3 * HO_BITS)) & HO_MASK,
            successes: (w >> (2 * HO_BITS)) & HO_MASK,
            failures: (w >> HO_BITS) & HO_MASK,
            slow: w & HO_MASK,
        }
    }
    fn pack(self) -> u64 {
        (self.tag << HO_TAG_SHIFT)
            | (self.admitted << (3 * HO_BITS))
            | (self.successes << (2 * HO_BITS))
            | (self.failures << HO_BITS)
            | self.slow
    }
    fn completed(self) -> u64 {
        self.successes + self.failures
    }
}

/// Permission for one call, from [`Breaker::acquire`]; hand it back to [`Breaker::record`] (call
/// finished) or [`Breaker::release`] (call cancelled). Both take it by value, so a permit is
/// used once (it is neither `Clone` nor `Copy`). Always hand it back: a half-open probe permit
/// that is simply dropped keeps its slot, and the probe round cannot finish without it (the
/// [`CircuitBreaker`](crate::CircuitBreaker) service does this for you, also on cancellation).
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    generation: u64,
    kind: PermitKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PermitKind {
    Closed,
    Probe,
    Disabled,
}

impl Permit {
    /// Whether this permit is one of the half-open probes.
    pub fn is_probe(&self) -> bool {
        self.kind == PermitKind::Probe
    }
}

/// Tunables read on the hot path, as atomics so a running breaker can be reconfigured.
#[derive(Debug)]
struct Params {
    failure_rate: AtomicU64,
    slow_rate: AtomicU64,
    slow_nanos: AtomicU64,
    minimum_calls: AtomicU32,
    consecutive: AtomicU32,
    wait_nanos: AtomicU64,
    max_wait_nanos: AtomicU64,
    multiplier: AtomicU64,
    probes: AtomicU32,
    count_fatal: AtomicBool,
    count_not_retryable: AtomicBool,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Params {
    fn new(c: &BreakerConfig) -> Self {
        Params {
            failure_rate: AtomicU64::new(c.failure_rate_threshold().to_bits()),
            slow_rate: AtomicU64::new(c.slow_call_rate_threshold().to_bits()),
            slow_nanos: AtomicU64::new(nanos(c.slow_call_duration())),
            minimum_calls: AtomicU32::new(c.minimum_calls()),
            consecutive: AtomicU32::new(c.consecutive_failures().unwrap_or(0)),
            wait_nanos: AtomicU64::new(nanos(c.wait_duration())),
            max_wait_nanos: AtomicU64::new(nanos(c.max_wait_duration())),
            multiplier: AtomicU64::new(c.backoff_multiplier().to_bits()),
            probes: AtomicU32::new(c.permitted_calls_in_half_open()),
            count_fatal: AtomicBool::new(c.count_fatal()),
            count_not_retryable: AtomicBool::new(c.count_not_retryable()),
        }
    }

    fn store(&self, c: &BreakerConfig) {
        let fresh = Params::new(c);
        macro_rules! copy {
            ($($f:ident),*) => { $( self.$f.store(fresh.$f.load(Relaxed), Relaxed); )* };
        }
        copy!(
            failure_rate,
            slow_rate,
            slow_nanos,
            minimum_calls,
            consecutive,
            wait_nanos,
            max_wait_nanos,
            multiplier,
            probes,
            count_fatal,
            count_not_retryable
        );
    }

    fn trips(&self, c: Counts) -> bool {
        let calls = f64::from(c.calls);
        f64::from(c.failures) >= f64::from_bits(self.failure_rate.load(Relaxed)) * calls
            || f64::from(c.slow) >= f64::from_bits(self.slow_rate.load(Relaxed)) * calls
    }
}

/// Metric handles, registered once per breaker.
struct Metrics {
    calls: [Counter; 4],
    rejected: Counter,
    state: Gauge,
    failure_rate: Gauge,
    slow_call_rate: Gauge,
    duration: Histogram,
}

impl Metrics {
    fn new(name: &str) -> Self {
        let calls = [
            Outcome::Success,
            Outcome::RETRYABLE,
            Outcome::NOT_RETRYABLE,
            Outcome::Fatal,
        ]
        .map(|o| {
            metrics::counter!(m::CALLS_TOTAL, LABEL_NAME => name.to_owned(), LABEL_OUTCOME => o.as_label())
        });
        Metrics {
            calls,
            rejected: metrics::counter!(m::REJECTED_TOTAL, LABEL_NAME => name.to_owned()),
            state: metrics::gauge!(m::STATE, LABEL_NAME => name.to_owned()),
            failure_rate: metrics::gauge!(m::FAILURE_RATE, LABEL_NAME => name.to_owned()),
            slow_call_rate: metrics::gauge!(m::SLOW_CALL_RATE, LABEL_NAME => name.to_owned()),
            duration: metrics::histogram!(m::CALL_DURATION_SECONDS, LABEL_NAME => name.to_owned()),
        }
    }

    fn calls(&self, outcome: Outcome) -> &Counter {
        &self.calls[match outcome {
            Outcome::Success => 0,
            Outcome::Failure { retryable: true } => 1,
            Outcome::Failure { retryable: false } => 2,
            Outcome::Fatal => 3,
        }]
    }
}

/// Cold-path state, under the transition lock.
struct Control {
    /// Opens since the breaker last closed (drives the growing wait).
    reopens: u32,
    /// The config in force (the last one applied).
    config: BreakerConfig,
}

struct Core {
    name: String,
    time: TimeSource,
    state: AtomicU64,
    open_until: AtomicU64,
    half_open: AtomicU64,
    consecutive: AtomicU32,
    /// Whether the rate gauges were last set to a nonzero value.
    rates_nonzero: AtomicBool,
    /// Fixed for the breaker's life: [`Breaker::reconfigure`] refuses a different shape, so
    /// the hot path reads the window without any indirection or lock.
    window: SlidingWindow,
    window_shape: Window,
    params: Params,
    control: Mutex<Control>,
    metrics: Metrics,
    health: Option<HealthSignal>,
}

/// A circuit breaker's shared state. Cloning gives another handle to the same breaker.
///
/// Use it
/// for [`snapshot`](Breaker::snapshot), manual control and [`reconfigure`](Breaker::reconfigure).
#[derive(Clone)]
pub struct Breaker {
    core: Arc<Core>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.core.name)
            .field("state", &self.state())
            .finish()
    }
}

fn build_window(shape: Window) -> SlidingWindow {
    match shape {
        Window::Count { size } => SlidingWindow::Count(CountWindow::new(size)),
        Window::Time { duration, buckets } => {
            let width = nanos(duration) / u64::from(buckets.max(1));
            SlidingWindow::Time(TimeWindow::new(width, buckets))
        }
    }
}

fn format_window(w: Window) -> String {
    match w {
        Window::Count { size } => format!("count window of {size} calls"),
        Window::Time { duration, buckets } => format!(
            "time window of {} in {buckets} buckets",
            humantime::format_duration(duration)
        ),
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self::build(config, None)
    }

    /// A closed breaker that publishes every classified call and its open/closed state to
    /// `health`.
    pub fn with_health(config: BreakerConfig, health: HealthSignal) -> Self {
        Self::build(config, Some(health))
    }

    fn build(config: BreakerConfig, health: Option<HealthSignal>) -> Self {
        let control = Control {
            reopens: 0,
            config: config.clone(),
        };
        let core = Core {
            name: config.name().to_owned(),
            time: TimeSource::new(config.clock()),
            state: AtomicU64::new(pack_state(0, State::Closed)),
            open_until: AtomicU64::new(0),
            half_open: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            rates_nonzero: AtomicBool::new(false),
            window: build_window(config.window()),
            window_shape: config.window(),
            params: Params::new(&config),
            control: Mutex::new(control),
            metrics: Metrics::new(config.name()),
            health,
        };
        core.metrics.state.set(0.0);
        if let Some(h) = &core.health {
            h.set_circuit_open(false);
        }
        Breaker {
            core: Arc::new(core),
        }
    }

    /// The policy name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The current state (as of now: an open breaker whose wait is over reports `Open` until
    /// the next call moves it to half-open).
    pub fn state(&self) -> State {
        unpack_state(self.core.state.load(Acquire)).1
    }

    fn window(&self) -> &SlidingWindow {
        &self.core.window
    }

    /// Now, on the breaker's clock.
    #[inline]
    pub(crate) fn now_at(&self) -> Moment {
        self.core.time.moment()
    }

    /// `at` in nanoseconds since the breaker was built.
    #[inline]
    fn nanos_of(&self, at: Moment) -> u64 {
        self.core.time.nanos_of(at)
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        self.core.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to make a call at `now`. `Err(retry_after)` means the call is rejected.
    pub fn acquire(&self, now: Instant) -> Result<Permit, Duration> {
        self.acquire_at(Moment::Tokio(now))
    }

    /// [`acquire`](Self::acquire) at a moment on the breaker's clock.
    #[inline]
    pub(crate) fn acquire_at(&self, now: Moment) -> Result<Permit, Duration> {
        let core = &*self.core;
        loop {
            let (generation, state) = unpack_state(core.state.load(Acquire));
            match state {
                State::Closed => {
                    return Ok(Permit {
                        generation,
                        kind: PermitKind::Closed,
                    })
                }
                State::Disabled => {
                    return Ok(Permit {
                        generation,
                        kind: PermitKind::Disabled,
                    })
                }
                State::ForcedOpen => return Err(self.reject(self.wait())),
                State::Open => {
                    let until = core.open_until.load(Acquire);
                    let at = self.nanos_of(now);
                    if at < until {
                        return Err(self.reject(Duration::from_nanos(until - at)));
                    }
                    self.transition_from(generation, State::HalfOpen, now);
                }
                State::HalfOpen => {
                    let limit = u64::from(core.params.probes.load(Relaxed));
                    let mut word = core.half_open.load(Acquire);
                    loop {
                        let mut p = Probes::unpack(word);
                        if p.tag != generation & HO_TAG_MASK {
                            break; // the state moved on; look again
                        }
                        if p.admitted >= limit {
                            if p.completed() >= limit {
                                // A reload lowered the probe count to what has already
                                // finished (or a probe beyond it was dropped): no probe is
                                // left to decide the round, so this call decides it.
                                self.decide_round(generation, p, now);
                                break;
                            }
                            return Err(self.reject(self.wait()));
                        }
                        p.admitted += 1;
                        match core
                            .half_open
                            .compare_exchange_weak(word, p.pack(), AcqRel, Acquire)
                        {
                            Ok(_) => {
                                return Ok(Permit {
                                    generation,
                                    kind: PermitKind::Probe,
                                })
                            }
                            Err(actual) => word = actual,
                        }
                    }
                }
            }
        }
    }

    fn wait(&self) -> Duration {
        Duration::from_nanos(self.core.params.wait_nanos.load(Relaxed))
    }

    fn reject(&self, retry_after: Duration) -> Duration {
        self.core.metrics.rejected.increment(1);
        tracing::debug!(breaker = %self.core.name, ?retry_after, "call rejected: circuit open");
        retry_after
    }

    /// Gives back a permit whose call was cancelled: a probe's slot frees up; nothing is counted.
    pub fn release(&self, permit: Permit) {
        if permit.kind != PermitKind::Probe {
            return;
        }
        let _ = self.core.half_open.fetch_update(AcqRel, Acquire, |word| {
            let mut p = Probes::unpack(word);
            (p.tag == permit.generation & HO_TAG_MASK && p.admitted > p.completed()).then(|| {
                p.admitted -= 1;
                p.pack()
            })
        });
    }

    fn counts_as_failure(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Success => false,
            Outcome::Failure { retryable: true } => true,
            Outcome::Failure { retryable: false } => {
                self.core.params.count_not_retryable.load(Relaxed)
            }
            Outcome::Fatal => self.core.params.count_fatal.load(Relaxed),
        }
    }

    /// Records the outcome of a call made with `permit`, which took `elapsed` and ended at `now`.
    pub fn record(&self, permit: Permit, outcome: Outcome, elapsed: Duration, now: Instant) {
        self.record_at(permit, outcome, elapsed, Moment::Tokio(now));
    }

    /// [`record`](Self::record) at a moment on the breaker's clock.
    #[inline]
    pub(crate) fn record_at(
        &self,
        permit: Permit,
        outcome: Outcome,
        elapsed: Duration,
        now: Moment,
    ) {
        let core = &*self.core;
        core.metrics.calls(outcome).increment(1);
        core.metrics.duration.record(elapsed.as_secs_f64());
        if let Some(h) = &core.health {
            h.record(outcome, elapsed);
        }
        let failure = self.counts_as_failure(outcome);
        let slow = nanos(elapsed) > core.params.slow_nanos.load(Relaxed);
        match permit.kind {
            PermitKind::Disabled => {}
            PermitKind::Closed => self.record_closed(permit.generation, failure, slow, now),
            PermitKind::Probe => self.record_probe(permit.generation, failure, slow, now),
        }
    }

    fn record_closed(&self, generation: u64, failure: bool, slow: bool, now: Moment) {
        let core = &*self.core;
        if core.state.load(Acquire) != pack_state(generation, State::Closed) {
            return; // the breaker moved on while this call ran
        }
        let window = self.window();
        let at = match window {
            SlidingWindow::Time(_) => self.nanos_of(now),
            SlidingWindow::Count(_) => 0, // a count window does not need the time
        };
        let counts = window.record(failure, slow, at);
        let mut trip = false;
        let limit = core.params.consecutive.load(Relaxed);
        if failure {
            let run = core.consecutive.fetch_add(1, Relaxed).saturating_add(1);
            trip = limit != 0 && run >= limit;
        } else if core.consecutive.load(Relaxed) != 0 {
            core.consecutive.store(0, Relaxed);
        }
        if counts.is_consistent(window.capacity()) {
            self.show_rates(counts);
            trip = trip
                || (counts.calls >= core.params.minimum_calls.load(Relaxed)
                    && core.params.trips(counts));
        }
        if trip {
            self.transition_from(generation, State::Open, now);
        }
    }

    /// Sets the rate gauges; while the window holds no failure and no slow call (the healthy
    /// steady state) they stay at 0 without two divisions per call.
    fn show_rates(&self, counts: Counts) {
        let core = &*self.core;
        if counts.failures != 0 || counts.slow != 0 {
            core.metrics.failure_rate.set(counts.failure_rate());
            core.metrics.slow_call_rate.set(counts.slow_call_rate());
            if !core.rates_nonzero.load(Relaxed) {
                core.rates_nonzero.store(true, Relaxed);
            }
        } else if core.rates_nonzero.load(Relaxed) {
            core.rates_nonzero.store(false, Relaxed);
            core.metrics.failure_rate.set(0.0);
            core.metrics.slow_call_rate.set(0.0);
        }
    }

    fn record_probe(&self, generation: u64, failure: bool, slow: bool, now: Moment) {
        let core = &*self.core;
        let limit = u64::from(core.params.probes.load(Relaxed));
        let updated = core.half_open.fetch_update(AcqRel, Acquire, |word| {
            let mut p = Probes::unpack(word);
            if p.tag != generation & HO_TAG_MASK || p.completed() >= p.admitted {
                return None;
            }
            if failure {
                p.failures += 1;
            } else {
                p.successes += 1;
            }
            p.slow += u64::from(slow);
            Some(p.pack())
        });
        let Ok(before) = updated else { return };
        let mut p = Probes::unpack(before);
        p.failures += u64::from(failure);
        p.successes += u64::from(!failure);
        p.slow += u64::from(slow);
        if p.completed() >= limit {
            self.decide_round(generation, p, now);
        }
    }

    /// Ends the half-open round of `generation` on its probes' results: open again if they
    /// trip the thresholds, closed otherwise.
    fn decide_round(&self, generation: u64, p: Probes, now: Moment) {
        let counts = Counts {
            calls: p.completed() as u32,
            failures: p.failures as u32,
            slow: p.slow as u32,
        };
        let to = if self.core.params.trips(counts) {
            State::Open
        } else {
            State::Closed
        };
        self.transition_from(generation, to, now);
    }

    /// Moves from the state of `generation` to `to`; does nothing if another transition
    /// happened first.
    fn transition_from(&self, generation: u64, to: State, now: Moment) -> bool {
        let mut control = self.lock();
        let (current, _) = unpack_state(self.core.state.load(Acquire));
        if current != generation {
            return false;
        }
        self.transition_locked(&mut control, to, now);
        true
    }

    fn transition_locked(&self, control: &mut Control, to: State, now: Moment) {
        let core = &*self.core;
        let (generation, from) = unpack_state(core.state.load(Acquire));
        let next = generation.wrapping_add(1) & (u64::MAX >> 8);
        match to {
            State::Open => {
                let base = core.params.wait_nanos.load(Relaxed) as f64;
                let factor = f64::from_bits(core.params.multiplier.load(Relaxed));
                let max = core.params.max_wait_nanos.load(Relaxed);
                let wait = (base * factor.powi(control.reopens.min(1000) as i32)).min(max as f64);
                let wait = (wait as u64).max(1);
                control.reopens = control.reopens.saturating_add(1);
                core.open_until
                    .store(self.nanos_of(now).saturating_add(wait), Release);
            }
            State::HalfOpen => core.half_open.store(Probes::fresh(next).pack(), Release),
            State::Closed => {
                control.reopens = 0;
                self.window().clear();
                core.consecutive.store(0, Relaxed);
                core.rates_nonzero.store(false, Relaxed);
                core.metrics.failure_rate.set(0.0);
                core.metrics.slow_call_rate.set(0.0);
            }
            State::ForcedOpen | State::Disabled => {}
        }
        core.state.store(pack_state(next, to), Release);
        // The health signal before the metrics and the log: a metrics recorder or a
        // tracing subscriber that panics here cannot leave the stack's view stale.
        if let Some(h) = &core.health {
            h.set_circuit_open(to.rejects());
        }
        core.metrics.state.set(f64::from(to.as_number()));
        metrics::counter!(
            m::TRANSITIONS_TOTAL,
            LABEL_NAME => core.name.clone(),
            LABEL_FROM => from.as_label(),
            LABEL_TO => to.as_label()
        )
        .increment(1);
        if to.rejects() {
            tracing::warn!(breaker = %core.name, %from, %to, "circuit breaker opened");
        } else {
            tracing::info!(breaker = %core.name, %from, %to, "circuit breaker state changed");
        }
    }

    fn force(&self, to: State) {
        let mut control = self.lock();
        let now = self.now_at();
        self.transition_locked(&mut control, to, now);
    }

    /// Opens the breaker until [`reset`](Breaker::reset): every call is rejected.
    pub fn force_open(&self) {
        self.force(State::ForcedOpen);
    }

    /// Switches the breaker off until [`reset`](Breaker::reset): every call passes and
    /// nothing is counted.
    pub fn disable(&self) {
        self.force(State::Disabled);
    }

    /// Closes the breaker with an empty window and the open wait back at its base.
    pub fn reset(&self) {
        self.force(State::Closed);
    }

    /// Whether [`reconfigure`](Self::reconfigure) would accept `config`, without applying
    /// it: the same clock and window as the running breaker. A reload spanning several
    /// stages checks each before it changes any.
    pub fn check(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        config
            .clock()
            .check_unchanged(self.core.time.clock(), "breaker")?;
        if config.window() != self.core.window_shape {
            return Err(ConfigError::new(
                "window",
                format_window(config.window()),
                format!(
                    "cannot change on a running breaker (it was built with {}); build a new one",
                    format_window(self.core.window_shape)
                ),
            ));
        }
        Ok(())
    }

    /// Applies a new config to the running breaker: thresholds, durations, counts and
    /// switches apply to the next decisions; the state, window contents and the current
    /// open wait are kept.
    ///
    /// The window's shape (`window`) is fixed when the breaker is built (the hot path reads
    /// it without indirection): a config with a different window is refused as a whole,
    /// with a [`ConfigError`] on `window`; build a new breaker for it. The name (metric
    /// labels) stays the one the breaker was built with.
    pub fn reconfigure(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        self.check(config)?;
        let mut control = self.lock();
        self.core.params.store(config);
        control.config = config.clone();
        drop(control);
        tracing::info!(breaker = %self.core.name, "circuit breaker reconfigured");
        Ok(())
    }

    /// The config in force (the one built with, or the last one applied by
    /// [`reconfigure`](Breaker::reconfigure)).
    pub fn config(&self) -> BreakerConfig {
        self.lock().config.clone()
    }

    /// The state, window counts and rates now.
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.snapshot_at(Instant::now())
    }

    /// The state, window counts and rates at `now`.
    pub fn snapshot_at(&self, now: Instant) -> BreakerSnapshot {
        let core = &*self.core;
        let (generation, state) = unpack_state(core.state.load(Acquire));
        let p = Probes::unpack(core.half_open.load(Acquire));
        let in_round = state == State::HalfOpen && p.tag == generation & HO_TAG_MASK;
        let counts = if in_round {
            Counts {
                calls: p.completed() as u32,
                failures: p.failures as u32,
                slow: p.slow as u32,
            }
        } else {
            self.window().counts(self.nanos_of(Moment::Tokio(now)))
        };
        let retry_after = match state {
            State::Open => Some(Duration::from_nanos(
                core.open_until
                    .load(Acquire)
                    .saturating_sub(self.nanos_of(Moment::Tokio(now))),
            )),
            State::ForcedOpen => Some(self.wait()),
            _ => None,
        };
        BreakerSnapshot {
            state,
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            failure_rate: counts.failure_rate(),
            slow_call_rate: counts.slow_call_rate(),
            consecutive_failures: core.consecutive.load(Relaxed),
            probes_admitted: if in_round { p.admitted as u32 } else { 0 },
            retry_after,
        }
    }

    /// Whether two handles are the same breaker.
    pub fn same_as(&self, other: &Breaker) -> bool {
        Arc::ptr_eq(&self.core, &other.core)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            BreakerConfig::builder()
                .window(Window::Count { size: 2 })
                .minimum_calls(2)
                .wait_duration(Duration::from_secs(1))
                .permitted_calls_in_half_open(2)
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn a_permit_from_an_earlier_state_records_nothing() {
        let b = breaker();
        let t0 = Instant::now();
        let (stale, stale2) = (b.acquire(t0).unwrap(), b.acquire(t0).unwrap());
        b.force_open();
        b.reset(); // closed again, a new generation
        b.record(stale, Outcome::RETRYABLE, Duration::ZERO, t0);
        assert_eq!(b.snapshot_at(t0).calls, 0);
        b.release(stale2); // a closed permit has nothing to give back
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn probes_are_counted_per_round_and_released_ones_come_back() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..2 {
            let p = b.acquire(t0).unwrap();
            b.record(p, Outcome::RETRYABLE, Duration::ZERO, t0);
        }
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.acquire(t0), Err(Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        let (p1, p2) = (b.acquire(t1).unwrap(), b.acquire(t1).unwrap());
        assert!(p1.is_probe() && p2.is_probe());
        assert!(b.acquire(t1).is_err());
        b.release(p1);
        assert_eq!(b.snapshot_at(t1).probes_admitted, 1);
        let p3 = b.acquire(t1).unwrap();
        assert!(
            b.acquire(t1).is_err(),
            "one released, one taken again: still 2"
        );
        b.record(p2, Outcome::Success, Duration::ZERO, t1);
        assert_eq!(b.state(), State::HalfOpen);
        b.record(p3, Outcome::Success, Duration::ZERO, t1);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn state_numbers_and_labels() {
        for (n, s) in State::ALL.iter().enumerate() {
            assert_eq!(usize::from(s.as_number()), n);
            assert_eq!(State::from_number(n as u64), *s);
            assert_eq!(s.to_string(), s.as_label());
        }
        assert_eq!(State::from_number(99), State::Disabled);
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::thread;
    use tower_prism_core::sync::AtomicUsize;

    /// `loom::model` with a preemption bound of 3 unless `LOOM_MAX_PREEMPTIONS` says
    /// otherwise, so each model finishes in seconds.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound.get_or_insert(3);
        builder.check(f);
    }

    fn breaker(probes: u32, window: u32) -> Breaker {
        let config = BreakerConfig::builder()
            .window(Window::Count { size: window })
            .minimum_calls(window)
            .permitted_calls_in_half_open(probes)
            .build()
            .unwrap();
        Breaker::new(config)
    }

    /// Three threads race for `n` probe permits; the first gives its permit back (a
    /// cancelled call) while the others hold theirs: at no moment are more than `n` held.
    fn probes_never_exceed(n: u32) {
        model(move || {
            let b = breaker(n, 4);
            b.force(State::HalfOpen);
            let held = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    let (b, held) = (b.clone(), held.clone());
                    thread::spawn(move || {
                        let Ok(permit) = b.acquire(Instant::now()) else {
                            return 0;
                        };
                        assert!(permit.is_probe());
                        let now_held = held.fetch_add(1, AcqRel) + 1;
                        assert!(now_held <= n as usize, "{now_held} probes held");
                        if i == 0 {
                            held.fetch_sub(1, AcqRel);
                            b.release(permit);
                            return 0;
                        }
                        1
                    })
                })
                .collect();
            let kept: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert!(kept <= n);
            assert_eq!(
                b.snapshot().probes_admitted,
                kept,
                "released permits came back"
            );
        });
    }

    #[test]
    fn loom_half_open_admits_at_most_one_probe() {
        probes_never_exceed(1);
    }

    #[test]
    fn loom_half_open_admits_at_most_two_probes() {
        probes_never_exceed(2);
    }

    /// One probe, recorded as a failure: whatever the interleaving, exactly one of three
    /// callers got through and the breaker is open again.
    #[test]
    fn loom_single_probe_round_reopens() {
        model(|| {
            let b = breaker(1, 4);
            b.force(State::HalfOpen);
            let admitted = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let (b, admitted) = (b.clone(), admitted.clone());
                    thread::spawn(move || {
                        let now = Instant::now();
                        if let Ok(permit) = b.acquire(now) {
                            admitted.fetch_add(1, Relaxed);
                            b.record(permit, Outcome::RETRYABLE, Duration::ZERO, now);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(admitted.load(Relaxed), 1);
            assert_eq!(b.state(), State::Open);
        });
    }

    /// Closed-state records from several threads all land in the window and the
    /// consecutive-failure counter.
    #[test]
    fn loom_closed_counters_add_up() {
        model(|| {
            let b = breaker(1, 4);
            let now = Instant::now();
            let first = b.acquire(now).unwrap();
            b.record(first, Outcome::Success, Duration::ZERO, now);
            let handles: Vec<_> = [Outcome::RETRYABLE, Outcome::RETRYABLE]
                .into_iter()
                .map(|outcome| {
                    let b = b.clone();
                    thread::spawn(move || {
                        let permit = b.acquire(now).unwrap();
                        b.record(permit, outcome, Duration::ZERO, now);
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            let snap = b.snapshot_at(now);
            assert_eq!(snap.state, State::Closed, "3 calls < minimum_calls 4");
            assert_eq!((snap.calls, snap.failures), (3, 2));
            assert_eq!(snap.consecutive_failures, 2);
        });
    }
}
