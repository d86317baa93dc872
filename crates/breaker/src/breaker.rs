//! [`Breaker`], the shared handle: state, snapshot, manual control, reconfiguration, and
//! the acquire / record / release calls for driving a breaker without the service.

use std::fmt;
use std::time::Duration;

use tower_prism_core::sync::Arc;
use tower_prism_core::{ConfigError, HealthSignal, Moment, Outcome};

use crate::config::BreakerConfig;
use crate::layer::ErrorHint;
use crate::state::{BreakerSnapshot, Machine, Permit, State, StateChange};

/// A circuit breaker's shared state. Cloning gives another handle to the same breaker.
///
/// Reach it with [`CircuitBreakerLayer::handle`](crate::CircuitBreakerLayer::handle) or
/// [`CircuitBreaker::handle`](crate::CircuitBreaker::handle), or build one with
/// [`Breaker::new`] to share it between several layers
/// ([`CircuitBreakerLayer::from_handle`](crate::CircuitBreakerLayer::from_handle)). Use it
/// for [`snapshot`](Breaker::snapshot), manual control
/// ([`force_open`](Breaker::force_open), [`disable`](Breaker::disable),
/// [`reset`](Breaker::reset)) and [`reconfigure`](Breaker::reconfigure).
///
/// Every method reads the time from the breaker's own clock
/// ([`BreakerConfigBuilder::clock`](crate::BreakerConfigBuilder::clock)).
///
/// Guarding work that is not a tower service:
///
/// ```
/// use tower_prism_breaker::{Breaker, BreakerConfig, State, Window};
/// use tower_prism_core::Outcome;
///
/// # fn main() -> Result<(), tower_prism_core::ConfigError> {
/// let config = BreakerConfig::builder()
///     .window(Window::Count { size: 2 })
///     .minimum_calls(2)
///     .build()?;
/// let breaker = Breaker::new("payments", &config)?;
/// for _ in 0..2 {
///     let permit = breaker.acquire().expect("closed: the call may go ahead");
///     // ... the call, which fails ...
///     breaker.record(permit, Outcome::RETRYABLE);
/// }
/// assert_eq!(breaker.state(), State::Open);
/// assert!(breaker.acquire().is_err(), "rejected until the wait is over");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Breaker {
    machine: Arc<Machine>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}

impl Breaker {
    /// A closed breaker named `name` (the `name` label of its metrics, and its log events),
    /// or an error naming the config field it refuses.
    ///
    /// To publish its outcomes to a [`HealthSignal`], build it with
    /// [`CircuitBreakerLayer::builder`](crate::CircuitBreakerLayer::builder) and take
    /// [`handle`](crate::CircuitBreakerLayer::handle).
    pub fn new(name: impl Into<String>, config: &BreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), config, None, None))
    }

    pub(crate) fn build(
        name: String,
        config: &BreakerConfig,
        health: Option<HealthSignal>,
        error_hint: Option<ErrorHint>,
    ) -> Self {
        let mut machine = Machine::new(name, config, health);
        machine.set_error_hint(error_hint);
        Breaker {
            machine: Arc::new(machine),
        }
    }

    /// The policy name.
    pub fn name(&self) -> &str {
        self.machine.name()
    }

    /// The current state (as of now: an open breaker whose wait is over reports `Open` until
    /// the next call moves it to half-open).
    pub fn state(&self) -> State {
        self.machine.state()
    }

    /// Asks to make a call now. `Err(retry_after)` means the call is rejected; `Ok` is a
    /// [`Permit`] to hand back to [`record`](Self::record) or [`release`](Self::release).
    ///
    /// The [`CircuitBreaker`](crate::CircuitBreaker) service does this for every call; use
    /// it to guard work that is not a tower service.
    pub fn acquire(&self) -> Result<Permit, Duration> {
        self.machine.acquire(self.machine.now())
    }

    /// Records the outcome of the call made with `permit`; its duration (for the slow-call
    /// rate) is the time since [`acquire`](Self::acquire) on the breaker's clock.
    pub fn record(&self, permit: Permit, outcome: Outcome) {
        let now = self.machine.now();
        let elapsed = permit.start.elapsed_to(now);
        self.machine.record(permit, outcome, elapsed, now);
    }

    /// Gives back a permit whose call was cancelled: a probe's slot frees up; nothing is counted.
    pub fn release(&self, permit: Permit) {
        self.machine.release(permit);
    }

    /// Now, on the breaker's clock (for the service, which times each call).
    #[inline]
    pub(crate) fn now(&self) -> Moment {
        self.machine.now()
    }

    /// [`acquire`](Self::acquire) at `now`, a moment the caller has already read.
    #[inline]
    pub(crate) fn acquire_at(&self, now: Moment) -> Result<Permit, Duration> {
        self.machine.acquire(now)
    }

    /// [`record`](Self::record) at `now`, a moment the caller has already read; `hint`
    /// is asked how long the result asks to wait only if this failure opens the circuit.
    #[inline]
    pub(crate) fn record_at(
        &self,
        permit: Permit,
        outcome: Outcome,
        now: Moment,
        hint: impl FnOnce() -> Option<Duration>,
    ) {
        let elapsed = permit.start.nanos_to(now);
        self.machine
            .record_hinted(permit, outcome, elapsed, now, hint);
    }

    /// Where an inner error's wait hint is read (the layer builder's `retry_after_hint`).
    #[inline]
    pub(crate) fn error_hint(&self) -> Option<ErrorHint> {
        self.machine.error_hint()
    }

    /// Calls `callback` on every change of state from now on (resilience4j's
    /// `onStateTransition`, Polly's `OnOpened` / `OnClosed` / `OnHalfOpened`): alerting, a
    /// log line of one's own, a cache to flush when the circuit opens. It runs after the
    /// change and outside the breaker's locks, so it may read or drive the breaker; keep it
    /// short, and hand slow work to a task. A callback that panics is logged and changes
    /// nothing. Callbacks add up; they live as long as the breaker.
    ///
    /// Callbacks hear the changes in the order they were made, one at a time. A change
    /// runs them on the thread that made it (a call ending, the first call after the open
    /// wait, a [`force_open`](Self::force_open)), unless they are running for an earlier
    /// change: then the thread running them runs them for this one next. So a callback
    /// that drives the breaker hears of its own change once it has returned, and one must
    /// not wait for the callbacks of a later change.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tower_prism_breaker::{Breaker, BreakerConfig, State, StateChange, Window};
    /// use tower_prism_core::Outcome;
    ///
    /// let config = BreakerConfig::builder()
    ///     .window(Window::Count { size: 2 })
    ///     .minimum_calls(2)
    ///     .build()?;
    /// let breaker = Breaker::new("payments", &config)?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// breaker.on_state_change(move |change: StateChange| log.lock().unwrap().push(change.to));
    /// for _ in 0..2 {
    ///     let permit = breaker.acquire().unwrap();
    ///     breaker.record(permit, Outcome::RETRYABLE);
    /// }
    /// assert_eq!(*seen.lock().unwrap(), [State::Open]);
    /// # Ok::<(), tower_prism_core::ConfigError>(())
    /// ```
    pub fn on_state_change(&self, callback: impl Fn(StateChange) + Send + Sync + 'static) {
        self.machine.on_state_change(std::sync::Arc::new(callback));
    }

    /// Opens the breaker until [`reset`](Breaker::reset): every call is rejected.
    pub fn force_open(&self) {
        self.machine.force(State::ForcedOpen);
    }

    /// Switches the breaker off until [`reset`](Breaker::reset): every call passes and
    /// nothing is counted.
    pub fn disable(&self) {
        self.machine.force(State::Disabled);
    }

    /// Watches without acting until [`reset`](Breaker::reset) (resilience4j's
    /// `transitionToMetricsOnlyState`): every call passes and is counted from an empty
    /// window, the rates, the snapshot and the metrics move as when closed, but the circuit
    /// never opens. For a breaker rolled out in shadow: see what it would have done before
    /// letting it act.
    ///
    /// ```
    /// use tower_prism_breaker::{Breaker, BreakerConfig, State, Window};
    /// use tower_prism_core::Outcome;
    ///
    /// let config = BreakerConfig::builder()
    ///     .window(Window::Count { size: 4 })
    ///     .minimum_calls(4)
    ///     .build()?;
    /// let breaker = Breaker::new("payments", &config)?;
    /// breaker.metrics_only();
    /// for _ in 0..4 {
    ///     let permit = breaker.acquire().unwrap();
    ///     breaker.record(permit, Outcome::RETRYABLE);
    /// }
    /// let snapshot = breaker.snapshot();
    /// assert_eq!(snapshot.state, State::MetricsOnly);
    /// assert_eq!(snapshot.failure_rate, 1.0, "every call failed, and the circuit is not open");
    /// # Ok::<(), tower_prism_core::ConfigError>(())
    /// ```
    pub fn metrics_only(&self) {
        self.machine.force(State::MetricsOnly);
    }

    /// Closes the breaker with an empty window and the open wait back at its base.
    pub fn reset(&self) {
        self.machine.force(State::Closed);
    }

    /// Whether [`reconfigure`](Self::reconfigure) would accept `config`, without applying
    /// it: valid, with the same clock and window as the running breaker. A reload spanning several
    /// stages checks each before it changes any.
    pub fn check(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        self.machine.check(config)
    }

    /// Applies a new config to the running breaker: thresholds, durations, counts and
    /// switches apply to the next decisions; the state, window contents and the current
    /// open wait are kept.
    ///
    /// An invalid config is refused with the error [`BreakerConfig::validate`] gives. The
    /// window's shape (`window`) and the clock are fixed when the breaker is built (the
    /// hot path reads them without indirection): a config with a different one is refused
    /// as a whole, with a [`ConfigError`] naming the field; build a new breaker for it. The
    /// name (metric labels) stays the one the breaker was built with.
    pub fn reconfigure(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        self.machine.reconfigure(config)
    }

    /// The config in force (the one built with, or the last one applied by
    /// [`reconfigure`](Breaker::reconfigure)).
    pub fn config(&self) -> BreakerConfig {
        self.machine.config()
    }

    /// The state, window counts and rates now.
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.machine.snapshot(self.machine.now())
    }

    /// Whether two handles are the same breaker.
    pub fn same_as(&self, other: &Breaker) -> bool {
        Arc::ptr_eq(&self.machine, &other.machine)
    }
}
