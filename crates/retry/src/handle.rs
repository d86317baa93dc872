//! [`RetryHandle`]: the state every service of one layer shares, and what it reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tower_prism_core::config::ConfigError;
use tower_prism_core::internal::{lock, mix64, GAMMA};

use crate::budget::RetryBudget;
use crate::config::RetryConfig;
use crate::hedge_config::HedgeDelay;
use crate::hint::ErrorHint;
use crate::latency::LatencyHistogram;
use crate::metrics::Metrics;
use crate::settings::{Hedge, Settings, SharedSettings};

/// The state every service of one layer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: String,
    pub settings: SharedSettings,
    /// The config in force, for [`RetryHandle::config`]; its lock also serialises
    /// reconfigurations (never taken on a call's path).
    pub config: Mutex<RetryConfig>,
    pub budget: RetryBudget,
    pub metrics: Metrics,
    pub error_hint: Option<ErrorHint>,
    /// Hedging and retries are exclusive
    /// ([`RetryLayerBuilder::exclusive_hedging`](crate::RetryLayerBuilder::exclusive_hedging)):
    /// checked on every reconfiguration, so a reload cannot bring both.
    exclusive_hedging: bool,
    rng: AtomicU64,
    pub retries: AtomicU64,
    pub gave_up: AtomicU64,
    /// Recent latencies, made when a percentile hedge delay is first configured (at build
    /// or by a reconfiguration), never on a call's path.
    pub latency: OnceLock<LatencyHistogram>,
    pub hedges_sent: AtomicU64,
    pub hedges_won: AtomicU64,
    pub hedges_no_budget: AtomicU64,
    pub cancelled_attempts: AtomicU64,
}

impl Shared {
    /// The delay before a hedge: the fixed one, or the latency percentile.
    #[inline]
    pub fn hedge_delay(&self, hedge: Hedge) -> Duration {
        match (hedge.fixed, self.latency.get()) {
            (Some(d), _) => d,
            (None, Some(h)) => h.delay(),
            // only while a reconfiguration to a percentile is half applied
            (None, None) => Duration::from_millis(100),
        }
    }

    /// Makes or updates the latency histogram for a percentile hedge delay.
    fn apply_hedge(&self, config: &RetryConfig) {
        if let Some(HedgeDelay::Percentile(p)) = config.hedge.as_ref().map(|h| h.delay) {
            let mut fresh = false;
            let h = self.latency.get_or_init(|| {
                fresh = true;
                LatencyHistogram::new(&p)
            });
            if !fresh {
                h.reconfigure(&p);
            }
        }
    }

    /// A fresh random word for jitter (lock-free, allocation-free).
    pub fn random(&self) -> u64 {
        mix64(self.rng.fetch_add(GAMMA, Ordering::Relaxed))
    }
}

/// The retry stage's shared state: its name, settings, budget and counters. Every
/// service of one [`RetryLayer`](crate::RetryLayer), and every clone of the handle, is
/// the same retry stage; reach it with [`RetryLayer::handle`](crate::RetryLayer::handle)
/// or [`Retry::handle`](crate::Retry::handle).
///
/// ```
/// use tower_prism_retry::{RetryConfig, RetryLayer};
///
/// let layer = RetryLayer::from_config(&RetryConfig::default()).unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.snapshot().max_attempts, 3);
/// let more = RetryConfig::builder().max_attempts(5).build().unwrap();
/// handle.reconfigure(&more).unwrap();
/// assert_eq!(handle.config().max_attempts, 5);
/// ```
#[derive(Debug, Clone)]
pub struct RetryHandle {
    pub(crate) shared: Arc<Shared>,
}

impl RetryHandle {
    pub(crate) fn new(
        name: String,
        config: &RetryConfig,
        budget: RetryBudget,
        error_hint: Option<ErrorHint>,
        exclusive_hedging: bool,
    ) -> Self {
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let shared = Shared {
            metrics: Metrics::new(&name),
            name,
            settings: SharedSettings::new(Settings::from_config(config)),
            config: Mutex::new(config.clone()),
            budget,
            error_hint,
            exclusive_hedging,
            rng: AtomicU64::new(seed),
            retries: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            latency: OnceLock::new(),
            hedges_sent: AtomicU64::new(0),
            hedges_won: AtomicU64::new(0),
            hedges_no_budget: AtomicU64::new(0),
            cancelled_attempts: AtomicU64::new(0),
        };
        shared.apply_hedge(config);
        RetryHandle {
            shared: Arc::new(shared),
        }
    }

    /// The policy name used in metrics and events.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The config in force (the last one applied).
    pub fn config(&self) -> RetryConfig {
        lock(&self.shared.config).clone()
    }

    /// The shared retry budget.
    pub fn budget(&self) -> &RetryBudget {
        &self.shared.budget
    }

    /// Whether [`reconfigure`](Self::reconfigure) would take `config`, changing nothing:
    /// it must be valid, with the budget `window` the stage was built with (the budget's
    /// slots are laid out for it, and the hot path reads their width without
    /// indirection). A different window is refused with a [`ConfigError`] naming
    /// `budget.window`; build a new layer for it. A stage built with
    /// [`exclusive_hedging`](crate::RetryLayerBuilder::exclusive_hedging) refuses `hedge`
    /// with `max_attempts` over 1, naming `max_attempts`.
    pub fn check(&self, config: &RetryConfig) -> Result<(), ConfigError> {
        config.validate()?;
        if self.shared.exclusive_hedging {
            config.check_exclusive_hedging()?;
        }
        let built = lock(&self.shared.config).budget.window;
        if config.budget.window != built {
            return Err(ConfigError::new(
                "window",
                humantime::format_duration(config.budget.window),
                format!(
                    "cannot change on a running retry stage (it was built with {}); build a new one",
                    humantime::format_duration(built)
                ),
            )
            .in_section("budget"));
        }
        Ok(())
    }

    /// Applies a new config to running services, all or nothing: a config
    /// [`check`](Self::check) refuses (an invalid value, a new budget `window`) changes
    /// nothing. New calls use the new `max_attempts` and `attempt_timeout`; backoff,
    /// `max_elapsed`, `honor_retry_after` and `max_retry_after` apply from the next retry
    /// on (calls in flight included: one that began while `max_elapsed` was unset counts it
    /// from its first retry after the reload, not knowing when it began); budget ratios
    /// and floor at once; hedging from the next call on (a percentile keeps the latencies
    /// recorded so far).
    pub fn reconfigure(&self, config: &RetryConfig) -> Result<(), ConfigError> {
        self.check(config)?;
        let s = &self.shared;
        let mut current = lock(&s.config);
        // the histogram first, so a call that sees the percentile setting finds it
        s.apply_hedge(config);
        s.settings.store(Settings::from_config(config));
        s.budget.reconfigure(&config.budget);
        *current = config.clone();
        drop(current);
        tracing::info!(name = %s.name, max_attempts = config.max_attempts, "retry reconfigured");
        Ok(())
    }

    /// What the retry stage is doing now.
    pub fn snapshot(&self) -> RetrySnapshot {
        let s = &self.shared;
        RetrySnapshot {
            max_attempts: s.settings.max_attempts(),
            budget_available: s.budget.available(),
            budget_enabled: s.budget.is_enabled(),
            budget_unhealthy: s.budget.is_unhealthy(),
            retries: s.retries.load(Ordering::Relaxed),
            gave_up: s.gave_up.load(Ordering::Relaxed),
            hedges_sent: s.hedges_sent.load(Ordering::Relaxed),
            hedges_won: s.hedges_won.load(Ordering::Relaxed),
            hedges_no_budget: s.hedges_no_budget.load(Ordering::Relaxed),
            cancelled_attempts: s.cancelled_attempts.load(Ordering::Relaxed),
            hedge_delay: {
                let hedge = s.settings.hedge();
                (hedge.max_hedged > 0).then(|| s.hedge_delay(hedge))
            },
        }
    }
}

/// What a retry stage is doing, cheaply read ([`RetryHandle::snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetrySnapshot {
    /// Attempts per call now in force.
    pub max_attempts: u32,
    /// Retries the budget would allow now (fractional).
    pub budget_available: f64,
    /// Whether the budget limits retries.
    pub budget_enabled: bool,
    /// Whether the budget's tightened ratio is in force.
    pub budget_unhealthy: bool,
    /// Retries sent since the layer was built (a retry planned but dropped before it was
    /// sent does not count).
    pub retries: u64,
    /// Calls that gave up with a retryable failure (attempts, deadline, budget, not
    /// replayable, a `Retry-After` hint over `max_retry_after`, the caller's deadline)
    /// since the layer was built.
    pub gave_up: u64,
    /// Hedges sent since the layer was built.
    pub hedges_sent: u64,
    /// Calls answered by a hedge rather than by the attempt it raced.
    pub hedges_won: u64,
    /// Hedges not sent because the retry budget was empty.
    pub hedges_no_budget: u64,
    /// Attempts cancelled because another attempt of the same call answered first.
    pub cancelled_attempts: u64,
    /// The delay a hedge would wait now (the fixed delay, or the latency percentile);
    /// `None` when hedging is off.
    pub hedge_delay: Option<Duration>,
}
