//! [`RetryHandle`]: the state every service of one layer shares, and what it reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tower_prism_core::config::ConfigError;
use tower_prism_core::internal::{lock, mix64};

use crate::budget::RetryBudget;
use crate::config::RetryConfig;
use crate::hint::ErrorHint;
use crate::metrics::Metrics;
use crate::settings::{Settings, SharedSettings};

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
    rng: AtomicU64,
    pub retries: AtomicU64,
    pub gave_up: AtomicU64,
}

impl Shared {
    /// A fresh random word for jitter (lock-free, allocation-free).
    pub fn random(&self) -> u64 {
        mix64(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
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
            rng: AtomicU64::new(seed),
            retries: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
        };
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

    /// Applies a new config to running services, all or nothing: an invalid config
    /// changes nothing. New calls use the new `max_attempts` and `attempt_timeout`;
    /// backoff, `max_elapsed`, `honor_retry_after` and `max_retry_after` apply from the
    /// next retry on (calls in flight included); budget ratios and floor at once. The
    /// budget's window length stays as built.
    pub fn reconfigure(&self, config: &RetryConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let s = &self.shared;
        let mut current = lock(&s.config);
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
    /// replayable, a `Retry-After` hint over `max_retry_after`) since the layer was built.
    pub gave_up: u64,
}
