//! [`Machine`]: the breaker's state and its transitions, lock-free in the closed state and
//! while admitting probes, with a brief lock on transitions.
//!
//! No tower types, and every operation takes the time as a [`Moment`] on the machine's
//! clock, so it is unit-, proptest- and loom-testable on its own; the public
//! [`Breaker`](crate::Breaker) handle reads the clock and calls in.

use std::collections::VecDeque;
use std::time::Duration;

#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

use tower_prism_core::internal::nanos;
use tower_prism_core::sync::{
    AtomicBool, AtomicU32, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use tower_prism_core::{ConfigError, HealthSignal, Moment, Outcome, TimeSource};

use super::metrics::Metrics;
use super::params::Params;
use super::permit::{Permit, PermitKind};
use super::probe::Probes;
use super::word::{next_generation, pack_state, unpack_state};
use super::{BreakerSnapshot, Listeners, State, StateChange};
use crate::config::{BreakerConfig, Window};
use crate::layer::ErrorHint;
use crate::window::{CountWindow, Counts, SlidingWindow, TimeWindow};

/// Cold-path state, under the transition lock.
struct Control {
    /// Opens since the breaker last closed (drives the growing wait).
    reopens: u32,
    /// The config in force (the last one applied).
    config: BreakerConfig,
    /// Whether a thread is telling the callbacks of a change; it tells those queued in
    /// `untold` too before it stops, so the callbacks hear them in the order they were made.
    telling: bool,
    /// Changes made while a thread was telling, oldest first: pushed under this lock, the
    /// order of the queue is the order of the transitions.
    untold: VecDeque<StateChange>,
}

/// One circuit breaker's state machine.
pub(crate) struct Machine {
    name: String,
    time: TimeSource,
    state: AtomicU64,
    open_until: AtomicU64,
    half_open: AtomicU64,
    /// When the current half-open round began, in nanoseconds (stored before the state
    /// says half-open).
    half_open_since: AtomicU64,
    consecutive: AtomicU32,
    /// Whether the rate gauges were last set to a nonzero value.
    rates_nonzero: AtomicBool,
    /// Fixed for the breaker's life: [`Machine::reconfigure`] refuses a different shape, so
    /// the hot path reads the window without any indirection or lock.
    window: SlidingWindow,
    window_shape: Window,
    params: Params,
    control: Mutex<Control>,
    metrics: Metrics,
    health: Option<HealthSignal>,
    /// Reads how long an inner error asks to wait (set by the layer builder's
    /// `retry_after_hint`); asked only when a failure opens the circuit.
    error_hint: Option<ErrorHint>,
    listeners: Listeners,
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

impl Machine {
    /// A closed breaker named `name` (metric labels, log events), publishing every
    /// classified call and its open/closed state to `health` if given.
    pub(crate) fn new(name: String, config: &BreakerConfig, health: Option<HealthSignal>) -> Self {
        let machine = Machine {
            time: TimeSource::new(config.clock),
            state: AtomicU64::new(pack_state(0, State::Closed)),
            open_until: AtomicU64::new(0),
            half_open: AtomicU64::new(0),
            half_open_since: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            rates_nonzero: AtomicBool::new(false),
            window: build_window(config.window),
            window_shape: config.window,
            params: Params::new(config),
            control: Mutex::new(Control {
                reopens: 0,
                config: config.clone(),
                telling: false,
                untold: VecDeque::new(),
            }),
            metrics: Metrics::new(&name),
            health,
            error_hint: None,
            listeners: Listeners::default(),
            name,
        };
        if let Some(h) = &machine.health {
            h.set_circuit_open(false);
        }
        machine
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Sets where an inner error's wait hint is read (before the machine is shared).
    pub(crate) fn set_error_hint(&mut self, hint: Option<ErrorHint>) {
        self.error_hint = hint;
    }

    /// Where an inner error's wait hint is read, if anywhere.
    #[inline]
    pub(crate) fn error_hint(&self) -> Option<ErrorHint> {
        self.error_hint
    }

    pub(crate) fn state(&self) -> State {
        let state = unpack_state(self.state.load(Acquire)).1;
        if state == State::HalfOpen && self.end_overdue_round(self.now()) {
            return self.state();
        }
        state
    }

    /// Opens the circuit again if the half-open round has lasted `max_wait_in_half_open`
    /// (resilience4j switches by a timer; here the next call or read does). Whether it did.
    fn end_overdue_round(&self, now: Moment) -> bool {
        let (generation, state) = unpack_state(self.state.load(Acquire));
        if state != State::HalfOpen || !self.probes_overdue(now) {
            return false;
        }
        tracing::warn!(
            breaker = %self.name,
            "half-open round not over within max_wait_in_half_open: opening again"
        );
        self.transition_from(generation, State::Open, now, None)
    }

    /// Now, on the machine's clock.
    #[inline]
    pub(crate) fn now(&self) -> Moment {
        self.time.moment()
    }

    /// `at` in nanoseconds since the machine was built.
    #[inline]
    fn nanos_of(&self, at: Moment) -> u64 {
        self.time.nanos_of(at)
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        #[cfg(not(loom))]
        {
            tower_prism_core::internal::lock(&self.control)
        }
        #[cfg(loom)]
        {
            self.control.lock().unwrap()
        }
    }

    /// Asks to make a call at `now`. `Err(retry_after)` means the call is rejected.
    #[inline]
    pub(crate) fn acquire(&self, now: Moment) -> Result<Permit, Duration> {
        // The closed circuit inline, every other state out of line: the caller's `call`
        // stays small enough for the compiler to inline the rest of it.
        let (generation, state) = unpack_state(self.state.load(Acquire));
        if state == State::Closed {
            return Ok(Permit {
                generation,
                kind: PermitKind::Closed,
                start: now,
            });
        }
        self.acquire_other(now)
    }

    /// [`acquire`](Self::acquire) when the circuit was not closed at first sight.
    #[inline(never)]
    fn acquire_other(&self, now: Moment) -> Result<Permit, Duration> {
        loop {
            let (generation, state) = unpack_state(self.state.load(Acquire));
            let permit = |kind| Permit {
                generation,
                kind,
                start: now,
            };
            match state {
                State::Closed => return Ok(permit(PermitKind::Closed)),
                State::Disabled => return Ok(permit(PermitKind::Disabled)),
                // Counted as a closed circuit's calls are; `record_closed` tells them apart.
                State::MetricsOnly => return Ok(permit(PermitKind::Closed)),
                State::ForcedOpen => return Err(self.reject(self.wait())),
                State::Open => {
                    let until = self.open_until.load(Acquire);
                    let at = self.nanos_of(now);
                    if at < until {
                        return Err(self.reject(Duration::from_nanos(until - at)));
                    }
                    self.transition_from(generation, State::HalfOpen, now, None);
                }
                State::HalfOpen => {
                    if let Some(result) = self.admit_probe(generation, now) {
                        return result.map(|()| permit(PermitKind::Probe));
                    }
                }
            }
        }
    }

    /// Takes a probe slot of the half-open round of `generation`; `None` when the state
    /// moved on (look again).
    fn admit_probe(&self, generation: u64, now: Moment) -> Option<Result<(), Duration>> {
        let limit = u64::from(self.params.probes.load(Relaxed));
        let mut word = self.half_open.load(Acquire);
        loop {
            let mut p = Probes::unpack(word);
            if !p.is_of(generation) {
                return None;
            }
            if p.admitted >= limit && p.completed() >= limit {
                // A reload lowered the probe count to what has already finished (or a
                // probe beyond it was dropped): no probe is left to decide the round, so
                // this call decides it.
                self.decide_round(generation, p, now, || None);
                return None;
            }
            if self.end_overdue_round(now) {
                return None;
            }
            if p.admitted >= limit {
                return Some(Err(self.reject(self.wait())));
            }
            p.admitted += 1;
            match self
                .half_open
                .compare_exchange_weak(word, p.pack(), AcqRel, Acquire)
            {
                Ok(_) => return Some(Ok(())),
                Err(actual) => word = actual,
            }
        }
    }

    /// Whether the half-open round has lasted `max_wait_in_half_open` (if set) by `now`.
    fn probes_overdue(&self, now: Moment) -> bool {
        let max = self.params.half_open_max_nanos.load(Relaxed);
        max != 0
            && self
                .nanos_of(now)
                .saturating_sub(self.half_open_since.load(Acquire))
                >= max
    }

    fn wait(&self) -> Duration {
        Duration::from_nanos(self.params.wait_nanos.load(Relaxed))
    }

    fn reject(&self, retry_after: Duration) -> Duration {
        self.metrics.rejected.increment(1);
        tracing::debug!(breaker = %self.name, ?retry_after, "call rejected: circuit open");
        retry_after
    }

    /// Gives back a permit whose call was cancelled: a probe's slot frees up; nothing is counted.
    pub(crate) fn release(&self, permit: Permit) {
        if permit.kind != PermitKind::Probe {
            return;
        }
        let _ = self.half_open.fetch_update(AcqRel, Acquire, |word| {
            let mut p = Probes::unpack(word);
            (p.is_of(permit.generation) && p.admitted > p.completed()).then(|| {
                p.admitted -= 1;
                p.pack()
            })
        });
    }

    /// Records the outcome of a call made with `permit`, which took `elapsed` and ended at `now`.
    #[inline]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn record(&self, permit: Permit, outcome: Outcome, elapsed: Duration, now: Moment) {
        self.record_hinted(permit, outcome, nanos(elapsed), now, || None);
    }

    /// [`record`](Self::record), with `hint` to ask how long the result asks to wait: it
    /// is called only if this failure opens the circuit (never on a success, never under
    /// the transition lock), and its answer sets the open wait (within bounds, see
    /// [`Params::open_wait`](super::params::Params::open_wait)). The call took
    /// `elapsed_nanos`: the slow-call check compares nanoseconds, and a `Duration` is
    /// made only for what takes one (the histogram, the health signal), not made and
    /// taken apart again on every call.
    #[inline]
    pub(crate) fn record_hinted(
        &self,
        permit: Permit,
        outcome: Outcome,
        elapsed_nanos: u64,
        now: Moment,
        hint: impl FnOnce() -> Option<Duration>,
    ) {
        let elapsed = || Duration::from_nanos(elapsed_nanos);
        self.metrics.calls(outcome).increment(1);
        self.metrics.duration.record(elapsed().as_secs_f64());
        if let Some(h) = &self.health {
            h.record(outcome, elapsed());
        }
        let failure = match outcome {
            Outcome::Success => false,
            // a failure the config does not count (a caller's fault, by default) is neither
            // a failure nor a success, as resilience4j's ignored exceptions: counted as a
            // success it would dilute the failure rate, and close a half-open circuit
            _ if !self.params.counts_as_failure(outcome) => return self.release(permit),
            _ => true,
        };
        let slow = elapsed_nanos > self.params.slow_nanos.load(Relaxed);
        // A success opening the circuit (slow calls, or the last probe of a failing round)
        // has no wait to ask for: the classifier is asked only of failures, as its
        // contract says.
        let hint = move || if failure { hint() } else { None };
        match permit.kind {
            PermitKind::Disabled => {}
            PermitKind::Closed => self.record_closed(permit.generation, failure, slow, now, hint),
            PermitKind::Probe => self.record_probe(permit.generation, failure, slow, now, hint),
        }
    }

    /// Records a call made while the circuit was closed, or metrics only (counted the same,
    /// but a trip opens nothing).
    #[inline]
    fn record_closed(
        &self,
        generation: u64,
        failure: bool,
        slow: bool,
        now: Moment,
        hint: impl FnOnce() -> Option<Duration>,
    ) {
        let word = self.state.load(Acquire);
        if word != pack_state(generation, State::Closed) && !is_metrics_only(word, generation) {
            return; // the breaker moved on while this call ran
        }
        let window = &self.window;
        let at = match window {
            SlidingWindow::Time(_) => self.nanos_of(now),
            SlidingWindow::Count(_) => 0, // a count window does not need the time
        };
        let counts = window.record(failure, slow, at);
        let mut trip = false;
        let limit = self.params.consecutive.load(Relaxed);
        if failure {
            let run = self.consecutive.fetch_add(1, Relaxed).saturating_add(1);
            trip = limit != 0 && run >= limit;
        } else if self.consecutive.load(Relaxed) != 0 {
            self.consecutive.store(0, Relaxed);
        }
        if counts.is_consistent(window.capacity()) {
            if counts.failures == 0 && counts.slow == 0 {
                // The healthy steady state: no rate to show, and no rate reaches a
                // threshold (both are above 0).
                self.clear_rates();
            } else {
                self.show_rates(counts);
                trip = trip
                    || (counts.calls >= self.params.minimum_calls.load(Relaxed)
                        && self.params.trips(counts));
            }
        }
        // Metrics only never opens; which state this was is read again only on a trip.
        if trip && self.state.load(Acquire) == pack_state(generation, State::Closed) {
            self.transition_from(generation, State::Open, now, hint());
        }
    }

    /// Sets the rate gauges; while the window holds no failure and no slow call (the healthy
    /// steady state) they stay at 0 without two divisions per call.
    fn show_rates(&self, counts: Counts) {
        if counts.failures != 0 || counts.slow != 0 {
            self.metrics.failure_ratio.set(counts.failure_rate());
            self.metrics.slow_call_ratio.set(counts.slow_call_rate());
            if !self.rates_nonzero.load(Relaxed) {
                self.rates_nonzero.store(true, Relaxed);
            }
        } else {
            self.clear_rates();
        }
    }

    /// [`show_rates`](Self::show_rates) of a window without failures or slow calls: the
    /// gauges go to 0 once, and stay there with one load per call.
    #[inline]
    fn clear_rates(&self) {
        if self.rates_nonzero.load(Relaxed) {
            self.rates_nonzero.store(false, Relaxed);
            self.metrics.failure_ratio.set(0.0);
            self.metrics.slow_call_ratio.set(0.0);
        }
    }

    fn record_probe(
        &self,
        generation: u64,
        failure: bool,
        slow: bool,
        now: Moment,
        hint: impl FnOnce() -> Option<Duration>,
    ) {
        // A verdict after `max_wait_in_half_open` comes after the round's end, which is
        // read lazily: end it now (as a timer would have) and ignore the verdict, so what
        // the breaker does never depends on whether something read its state meanwhile.
        if self.probes_overdue(now) {
            self.end_overdue_round(now);
            return;
        }
        let limit = u64::from(self.params.probes.load(Relaxed));
        let updated = self.half_open.fetch_update(AcqRel, Acquire, |word| {
            let mut p = Probes::unpack(word);
            if !p.is_of(generation) || p.completed() >= p.admitted {
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
            self.decide_round(generation, p, now, hint);
        }
    }

    /// Ends the half-open round of `generation` on its probes' results: open again if they
    /// trip the thresholds (for the wait `hint` asks, if it says), closed otherwise.
    fn decide_round(
        &self,
        generation: u64,
        p: Probes,
        now: Moment,
        hint: impl FnOnce() -> Option<Duration>,
    ) {
        if self.params.trips(probe_counts(p)) {
            self.transition_from(generation, State::Open, now, hint());
        } else {
            self.transition_from(generation, State::Closed, now, None);
        }
    }

    /// Moves from the state of `generation` to `to` (an open state waiting what `hint`
    /// asks, if it says); does nothing if another transition happened first.
    fn transition_from(
        &self,
        generation: u64,
        to: State,
        now: Moment,
        hint: Option<Duration>,
    ) -> bool {
        let mut control = self.lock();
        let (current, _) = unpack_state(self.state.load(Acquire));
        if current != generation {
            return false;
        }
        let change = self.transition_locked(&mut control, to, now, hint);
        self.tell(control, change);
        true
    }

    fn transition_locked(
        &self,
        control: &mut Control,
        to: State,
        now: Moment,
        hint: Option<Duration>,
    ) -> StateChange {
        let (generation, from) = unpack_state(self.state.load(Acquire));
        let next = next_generation(generation);
        match to {
            State::Open => {
                let wait = self.params.open_wait(control.reopens, hint);
                control.reopens = control.reopens.saturating_add(1);
                self.open_until
                    .store(self.nanos_of(now).saturating_add(wait), Release);
            }
            State::HalfOpen => {
                self.half_open_since.store(self.nanos_of(now), Release);
                self.half_open.store(Probes::fresh(next).pack(), Release);
            }
            // Metrics only starts counting afresh, as resilience4j's state does.
            State::Closed | State::MetricsOnly => {
                control.reopens = 0;
                self.window.clear();
                self.consecutive.store(0, Relaxed);
                self.rates_nonzero.store(false, Relaxed);
                self.metrics.failure_ratio.set(0.0);
                self.metrics.slow_call_ratio.set(0.0);
            }
            State::ForcedOpen | State::Disabled => {}
        }
        self.state.store(pack_state(next, to), Release);
        // The health signal before the metrics and the log: a metrics recorder or a
        // tracing subscriber that panics here cannot leave the stack's view stale.
        if let Some(h) = &self.health {
            h.set_circuit_open(to.rejects());
        }
        self.metrics.transition(from, to);
        if to.rejects() {
            tracing::warn!(breaker = %self.name, %from, %to, "circuit breaker opened");
        } else {
            tracing::info!(breaker = %self.name, %from, %to, "circuit breaker state changed");
        }
        StateChange { from, to }
    }

    /// Moves to `to` whatever the state (manual control).
    pub(crate) fn force(&self, to: State) {
        let mut control = self.lock();
        let now = self.now();
        let change = self.transition_locked(&mut control, to, now, None);
        self.tell(control, change);
    }

    /// Tells the callbacks of `change`, just made under `control`, outside the lock and
    /// after every change made before it. A thread telling its own change once it has
    /// dropped the lock could tell it before an earlier one (a trip racing a `force_open`,
    /// a callback driving the breaker), so one thread tells at a time, and tells next the
    /// changes queued meanwhile, in the order they were made. Nothing is queued (nor
    /// allocated) unless transitions overlap.
    fn tell(&self, mut control: MutexGuard<'_, Control>, mut change: StateChange) {
        if control.telling {
            control.untold.push_back(change);
            return;
        }
        control.telling = true;
        drop(control);
        // Should telling unwind (a tracing subscriber panicking on the log of a panicking
        // callback), the next change's thread takes over what is left.
        struct Teller<'a>(&'a Machine);
        impl Drop for Teller<'_> {
            fn drop(&mut self) {
                self.0.lock().telling = false;
            }
        }
        let teller = Teller(self);
        loop {
            self.listeners.tell(&self.name, change);
            let mut control = self.lock();
            match control.untold.pop_front() {
                Some(next) => change = next,
                None => {
                    // Under the lock that queues: a change made from now on finds no one
                    // telling, and tells itself.
                    control.telling = false;
                    drop(control);
                    std::mem::forget(teller);
                    return;
                }
            }
        }
    }

    /// Adds a callback told of every state change.
    pub(crate) fn on_state_change(
        &self,
        listener: std::sync::Arc<dyn Fn(StateChange) + Send + Sync>,
    ) {
        self.listeners.add(listener);
    }

    /// Whether [`reconfigure`](Self::reconfigure) would accept `config`: valid, with the
    /// same clock and window shape.
    pub(crate) fn check(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        config.clock.check_unchanged(self.time.clock(), "breaker")?;
        if config.window != self.window_shape {
            return Err(ConfigError::new(
                "window",
                format_window(config.window),
                format!(
                    "cannot change on a running breaker (it was built with {}); build a new one",
                    format_window(self.window_shape)
                ),
            ));
        }
        Ok(())
    }

    /// Applies `config` (all or nothing: a different clock or window is refused).
    pub(crate) fn reconfigure(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        self.check(config)?;
        let mut control = self.lock();
        self.params.store(config);
        control.config = config.clone();
        drop(control);
        tracing::info!(breaker = %self.name, "circuit breaker reconfigured");
        Ok(())
    }

    /// The config in force.
    pub(crate) fn config(&self) -> BreakerConfig {
        self.lock().config.clone()
    }

    /// The state, window counts and rates at `now`.
    pub(crate) fn snapshot(&self, now: Moment) -> BreakerSnapshot {
        self.end_overdue_round(now);
        let (generation, state) = unpack_state(self.state.load(Acquire));
        let p = Probes::unpack(self.half_open.load(Acquire));
        let in_round = state == State::HalfOpen && p.is_of(generation);
        let counts = if in_round {
            probe_counts(p)
        } else {
            self.window.counts(self.nanos_of(now))
        };
        let retry_after = match state {
            State::Open => Some(Duration::from_nanos(
                self.open_until
                    .load(Acquire)
                    .saturating_sub(self.nanos_of(now)),
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
            consecutive_failures: self.consecutive.load(Relaxed),
            probes_admitted: if in_round { p.admitted as u32 } else { 0 },
            retry_after,
        }
    }
}

/// Whether `word` is the metrics-only state of `generation`. Cold: asked only of a call
/// that did not end in the closed state it began in, so the closed circuit's record keeps
/// its one comparison (callgrind: 5 instructions a call more otherwise).
#[cold]
fn is_metrics_only(word: u64, generation: u64) -> bool {
    word == pack_state(generation, State::MetricsOnly)
}

/// A probe round's results as window counts.
fn probe_counts(p: Probes) -> Counts {
    Counts {
        calls: p.completed() as u32,
        failures: p.failures as u32,
        slow: p.slow as u32,
    }
}
