//! [`FaultHandle`]: the state every service of one layer shares, and what it reports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tower_prism_core::config::ConfigError;
use tower_prism_core::internal::{lock, mix64};

use crate::config::FaultConfig;
use crate::faults::StatusFault;
use crate::metrics::Metrics;
use crate::plan::{Decision, Exclusive, Plan, WORDS};
use crate::seqlock::SeqCell;

/// The odd step between two calls' draws (2^64 / golden ratio): consecutive counter
/// values mixed by `mix64` look independent.
const STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// The state every service of one layer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    name: String,
    /// `true` when the plan may inject something: the one load a call makes when the
    /// stage is off or injects nothing.
    active: AtomicBool,
    /// The [`Plan`] in force, read whole by each call while `active`.
    plan: SeqCell<WORDS>,
    /// `enabled` of the config in force, for snapshots.
    enabled: AtomicBool,
    /// The config in force; its lock also serialises reconfigurations (never taken on a
    /// call's path).
    config: Mutex<FaultConfig>,
    /// The status faults the layer can build a response for.
    status_kinds: StatusKinds,
    /// The draw counter: each call takes two steps with one atomic add, one per draw.
    rng: AtomicU64,
    calls: AtomicU64,
    errors: AtomicU64,
    aborts: AtomicU64,
    statuses: AtomicU64,
    delays: AtomicU64,
    /// Calls with a fault now: counted only on the fault path, by [`ActiveFault`].
    active_faults: AtomicU64,
    /// Calls that drew a fault while `max_active_faults` were active.
    overflows: AtomicU64,
    pub(crate) metrics: Metrics,
}

impl Shared {
    /// The faults of this call, `None` if it gets none, with the call's place among the
    /// active faults. A stage switched off or with nothing to inject answers after one
    /// relaxed load.
    #[inline]
    pub(crate) fn draw(self: &Arc<Self>) -> Option<(Decision, ActiveFault)> {
        if !self.active.load(Ordering::Relaxed) {
            return None;
        }
        self.draw_active()
    }

    #[inline(never)]
    fn draw_active(self: &Arc<Self>) -> Option<(Decision, ActiveFault)> {
        let plan = Plan::decode(self.plan.read()?);
        // Two steps per call, one per draw: every draw of every call mixes a different
        // counter value (for 2^63 calls), so no two draws are the same.
        let step = self.rng.fetch_add(STEP.wrapping_mul(2), Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        let decision = plan.decide(mix64(step), mix64(step.wrapping_add(STEP)));
        if decision.delay.is_none() && decision.fault.is_none() {
            return None;
        }
        // Only a call that drew a fault takes a place: one add, undone past the limit, so
        // that racing calls never hold more places than the limit (a load then an add
        // could let them all in).
        if self.active_faults.fetch_add(1, Ordering::Relaxed) >= plan.max_active() {
            self.active_faults.fetch_sub(1, Ordering::Relaxed);
            self.overflows.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let active = ActiveFault(Arc::clone(self));
        if decision.delay.is_some() {
            self.delays.fetch_add(1, Ordering::Relaxed);
            self.metrics.latency.increment(1);
        }
        tracing::debug!(
            name = %self.name,
            delay = ?decision.delay,
            fault = ?decision.fault,
            "fault injected"
        );
        Some((decision, active))
    }

    /// Counts an exclusive fault as the caller got it (a status whose response could
    /// not be built is an error).
    pub(crate) fn count(&self, fault: Exclusive) {
        let (count, metric) = match fault {
            Exclusive::Error => (&self.errors, &self.metrics.error),
            Exclusive::Abort => (&self.aborts, &self.metrics.abort),
            Exclusive::Status(_) | Exclusive::Grpc(_) => (&self.statuses, &self.metrics.status),
        };
        count.fetch_add(1, Ordering::Relaxed);
        metric.increment(1);
    }
}

/// The fault stage's shared state: its name, the faults in force and counters. Every
/// service of one [`FaultLayer`](crate::FaultLayer), and every clone of the handle, is
/// the same stage; reach it with [`FaultLayer::handle`](crate::FaultLayer::handle) or
/// [`Fault::handle`](crate::Fault::handle).
///
/// ```
/// use tower_prism_fault::{FaultConfig, FaultLayer};
///
/// let layer = FaultLayer::from_config(&FaultConfig::default()).unwrap();
/// let handle = layer.handle();
/// assert!(handle.snapshot().enabled);
///
/// // a game day starts: 5 % of calls fail
/// handle.reconfigure(&FaultConfig::builder().error(0.05).build().unwrap()).unwrap();
/// // ...and ends
/// handle.reconfigure(&FaultConfig::builder().enabled(false).build().unwrap()).unwrap();
/// assert!(!handle.snapshot().enabled);
/// ```
#[derive(Debug, Clone)]
pub struct FaultHandle {
    pub(crate) shared: Arc<Shared>,
}

impl FaultHandle {
    /// A stage named `name` with a valid `config`.
    pub(crate) fn new(name: String, config: &FaultConfig, status_kinds: StatusKinds) -> Self {
        let plan = Plan::from_config(config);
        let shared = Arc::new(Shared {
            metrics: Metrics::new(&name),
            name,
            active: AtomicBool::new(plan.injects()),
            plan: SeqCell::new(plan.encode()),
            enabled: AtomicBool::new(config.enabled),
            config: Mutex::new(config.clone()),
            status_kinds,
            rng: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            aborts: AtomicU64::new(0),
            statuses: AtomicU64::new(0),
            delays: AtomicU64::new(0),
            active_faults: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        });
        let seed = config.seed.unwrap_or_else(|| random_seed(&shared));
        shared.rng.store(seed, Ordering::Relaxed);
        FaultHandle { shared }
    }

    /// The policy name used in metrics and events.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The config in force (the one built with, or the last one applied).
    pub fn config(&self) -> FaultConfig {
        lock(&self.shared.config).clone()
    }

    /// Whether [`reconfigure`](Self::reconfigure) would accept `config`, without applying
    /// it: valid, and with no status fault unless the layer was given a status builder
    /// ([`FaultLayerBuilder::status_with`](crate::FaultLayerBuilder::status_with)), no
    /// gRPC one unless given it by
    /// [`grpc_status_with`](crate::FaultLayerBuilder::grpc_status_with).
    pub fn check(&self, config: &FaultConfig) -> Result<(), ConfigError> {
        config.validate()?;
        check_status_supported(config, self.shared.status_kinds)
    }

    /// Applies a new config to running services, all or nothing: a config
    /// [`check`](Self::check) refuses changes nothing. The next call draws from the new
    /// faults; a call already delayed keeps its delay and its fault.
    ///
    /// A config with a different `seed` than the one in force restarts the draws from
    /// it, so a seeded game day replays the same faults; otherwise the draws go on where
    /// they were. Switching `enabled` logs an `info` event.
    pub fn reconfigure(&self, config: &FaultConfig) -> Result<(), ConfigError> {
        self.check(config)?;
        let s = &self.shared;
        let mut current = lock(&s.config);
        let plan = Plan::from_config(config);
        // Off first when turning off, on last when turning on: a call that sees `active`
        // reads a whole plan either way (the seqlock), so this only saves it the read.
        if !plan.injects() {
            s.active.store(false, Ordering::Relaxed);
        }
        s.plan.write(plan.encode());
        if let Some(seed) = config.seed.filter(|seed| current.seed != Some(*seed)) {
            s.rng.store(seed, Ordering::Relaxed);
        }
        if plan.injects() {
            s.active.store(true, Ordering::Release);
        }
        s.enabled.store(config.enabled, Ordering::Relaxed);
        if current.enabled != config.enabled {
            tracing::info!(
                name = %s.name,
                enabled = config.enabled,
                "fault injection switched {}",
                if config.enabled { "on" } else { "off" }
            );
        }
        *current = config.clone();
        Ok(())
    }

    /// What the stage has done since it was built.
    pub fn snapshot(&self) -> FaultSnapshot {
        let s = &self.shared;
        FaultSnapshot {
            enabled: s.enabled.load(Ordering::Relaxed),
            injected_errors: s.errors.load(Ordering::Relaxed),
            injected_aborts: s.aborts.load(Ordering::Relaxed),
            injected_statuses: s.statuses.load(Ordering::Relaxed),
            injected_latency: s.delays.load(Ordering::Relaxed),
            calls: s.calls.load(Ordering::Relaxed),
            active_faults: s.active_faults.load(Ordering::Relaxed),
            faults_overflow: s.overflows.load(Ordering::Relaxed),
        }
    }
}

/// The status faults a layer can build a response for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusKinds {
    None,
    Http,
    /// HTTP and gRPC.
    Grpc,
}

/// Refuses a status fault where no response can be built.
pub(crate) fn check_status_supported(
    config: &FaultConfig,
    kinds: StatusKinds,
) -> Result<(), ConfigError> {
    let Some(status) = config.status.filter(|status| status.rate > 0.0) else {
        return Ok(());
    };
    match (kinds, status.grpc_code) {
        (StatusKinds::None, _) => Err(ConfigError::new(
            "status",
            describe(&status),
            "this fault stage cannot build the service's response: inject `error` or \
             `abort` faults, or give it a status builder (`FaultLayerBuilder::status_with`, \
             `HttpStatus` or `EmptyHttpBody` for `http::Response`; a tower-prism policy \
             with an HTTP profile has one)",
        )),
        (StatusKinds::Http, Some(code)) => Err(ConfigError::new(
            "status.grpc_code",
            code,
            "this fault stage answers HTTP statuses only: give `code`, or give it a builder \
             of gRPC answers (`FaultLayerBuilder::grpc_status_with` and `GrpcStatus`; a \
             tower-prism policy with a gRPC profile has one)",
        )),
        _ => Ok(()),
    }
}

/// A status fault as TOML writes it, for an error message.
fn describe(status: &StatusFault) -> String {
    match (status.code, status.grpc_code) {
        (Some(code), None) => format!("{{ rate = {}, code = {code} }}", status.rate),
        (None, Some(code)) => format!("{{ rate = {}, grpc_code = {code} }}", status.rate),
        _ => format!("{{ rate = {} }}", status.rate),
    }
}

/// A seed for an unseeded stage: the process's random hasher keys, this stage's address
/// and the time, mixed.
fn random_seed(shared: &Arc<Shared>) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(Arc::as_ptr(shared) as usize);
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}

/// What a fault stage has done, cheaply read ([`FaultHandle::snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultSnapshot {
    /// `enabled` of the config in force.
    pub enabled: bool,
    /// Calls failed with [`Error::Injected`](crate::Error::Injected).
    pub injected_errors: u64,
    /// Calls failed with [`Error::Aborted`](crate::Error::Aborted).
    pub injected_aborts: u64,
    /// Calls answered with an injected status.
    pub injected_statuses: u64,
    /// Calls delayed.
    pub injected_latency: u64,
    /// Calls that drew for faults: made while the stage was enabled with some rate above
    /// zero (calls made while it injects nothing are not counted, so that costs nothing).
    pub calls: u64,
    /// Calls with a fault now: in their delay, or with an injected answer not yet
    /// returned (Envoy's `active_faults`).
    pub active_faults: u64,
    /// Calls that drew a fault and got none because `max_active_faults` were active
    /// (Envoy's `faults_overflow`).
    pub faults_overflow: u64,
}

/// One call's place among the active faults, given back when dropped: when the call is
/// answered, or its future dropped (cancelled, or unwound by a panic).
pub(crate) struct ActiveFault(Arc<Shared>);

impl Drop for ActiveFault {
    fn drop(&mut self) {
        self.0.active_faults.fetch_sub(1, Ordering::Relaxed);
    }
}
