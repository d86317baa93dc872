//! [`RetryLayer`], its builder and the state its services share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram};
use tower_layer::Layer;
use tower_prism_core::config::ConfigError;
use tower_prism_core::metrics::retry as m;
use tower_prism_core::metrics::{LABEL_NAME, LABEL_REASON};
use tower_prism_core::{DefaultClassifier, HealthSignal, HttpClassifier};

use crate::backoff::{mix, Backoff};
use crate::budget::RetryBudget;
use crate::config::{BudgetConfig, RetryConfig};
use crate::http::{ReplayIdempotent, RetryAfterHeader};
use crate::policy::{CloneRequest, ErrorHint, NoHint};
use crate::service::Retry;
use crate::settings::{Settings, SharedSettings};

/// Metric handles, registered once when the layer is built.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub attempts: Histogram,
    pub retry_error: Counter,
    pub retry_status: Counter,
    pub retry_timeout: Counter,
    pub budget_exhausted: Counter,
    pub gave_up_max_attempts: Counter,
    pub gave_up_deadline: Counter,
    pub gave_up_budget: Counter,
    pub gave_up_not_retryable: Counter,
    pub gave_up_fatal: Counter,
    pub gave_up_not_replayable: Counter,
    pub gave_up_retry_after: Counter,
    pub backoff: Histogram,
}

impl Metrics {
    fn new(name: &str) -> Self {
        let name = name.to_string();
        let retries = |reason: &'static str| metrics::counter!(m::RETRIES_TOTAL, LABEL_NAME => name.clone(), LABEL_REASON => reason);
        let gave_up = |reason: &'static str| metrics::counter!(m::GAVE_UP_TOTAL, LABEL_NAME => name.clone(), LABEL_REASON => reason);
        Metrics {
            attempts: metrics::histogram!(m::ATTEMPTS, LABEL_NAME => name.clone()),
            retry_error: retries("error"),
            retry_status: retries("status"),
            retry_timeout: retries("timeout"),
            budget_exhausted: metrics::counter!(m::BUDGET_EXHAUSTED_TOTAL, LABEL_NAME => name.clone()),
            gave_up_max_attempts: gave_up("max_attempts"),
            gave_up_deadline: gave_up("deadline"),
            gave_up_budget: gave_up("budget"),
            gave_up_not_retryable: gave_up("not_retryable"),
            gave_up_fatal: gave_up("fatal"),
            gave_up_not_replayable: gave_up("not_replayable"),
            gave_up_retry_after: gave_up("retry_after"),
            backoff: metrics::histogram!(m::BACKOFF_SECONDS, LABEL_NAME => name.clone()),
        }
    }
}

/// The state every service of one layer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: String,
    pub settings: SharedSettings,
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
        mix(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
    }
}

/// What a retry layer is doing, cheaply read.
#[derive(Debug, Clone, Copy, PartialEq)]
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

/// Retries failed calls of the services it wraps. Every service it makes (and every clone
/// of those) shares one budget and one set of settings.
///
/// `C` classifies results ([`Classify`](tower_prism_core::Classify) over
/// `Result<&Res, &BoxError>`), `R` copies requests for retries
/// ([`ReplayRequest`](crate::ReplayRequest)), `H` reads hints from responses
/// ([`ResponseHint`](crate::ResponseHint)).
#[derive(Debug, Clone)]
pub struct RetryLayer<C = DefaultClassifier, R = CloneRequest, H = NoHint> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) classify: C,
    pub(crate) replay: R,
    pub(crate) hint: H,
}

impl RetryLayer {
    /// A builder starting from [`RetryConfig::default`].
    pub fn builder() -> RetryBuilder {
        RetryBuilder::from_config(RetryConfig::default())
    }

    /// A layer from a config, with the default classifier and `Clone` requests.
    pub fn from_config(config: &RetryConfig) -> Result<Self, ConfigError> {
        RetryBuilder::from_config(config.clone()).build()
    }
}

impl<C, R, H> RetryLayer<C, R, H> {
    /// Applies a new config to running services. New calls use the new `max_attempts` and
    /// `attempt_timeout`; backoff, `max_elapsed`, `honor_retry_after` and `max_retry_after`
    /// apply from the next retry on (calls in flight included); budget ratios and floor at
    /// once. The budget's window length stays as built.
    pub fn reconfigure(&self, config: &RetryConfig) -> Result<(), ConfigError> {
        config.validate()?;
        self.shared.settings.store(Settings::from_config(config));
        self.shared.budget.reconfigure(&config.budget);
        tracing::info!(name = %self.shared.name, max_attempts = config.max_attempts, "retry reconfigured");
        Ok(())
    }

    /// The shared retry budget.
    pub fn budget(&self) -> &RetryBudget {
        &self.shared.budget
    }

    /// The policy name used in metrics and events.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// What the layer is doing now.
    pub fn snapshot(&self) -> RetrySnapshot {
        let s = &self.shared;
        RetrySnapshot {
            max_attempts: s.settings.load().max_attempts,
            budget_available: s.budget.available(),
            budget_enabled: s.budget.is_enabled(),
            budget_unhealthy: s.budget.is_unhealthy(),
            retries: s.retries.load(Ordering::Relaxed),
            gave_up: s.gave_up.load(Ordering::Relaxed),
        }
    }
}

impl<S, C: Clone, R: Clone, H: Clone> Layer<S> for RetryLayer<C, R, H> {
    type Service = Retry<S, C, R, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: self.shared.clone(),
            classify: self.classify.clone(),
            replay: self.replay.clone(),
            hint: self.hint.clone(),
        }
    }
}

/// Builds a [`RetryLayer`]; reads as English:
///
/// ```
/// use std::time::Duration;
/// use tower_prism_retry::{Backoff, RetryLayer};
///
/// let layer = RetryLayer::builder()
///     .max_attempts(4)
///     .backoff(Backoff::exponential(Duration::from_millis(20), Duration::from_secs(1)))
///     .max_elapsed(Duration::from_secs(3))
///     .attempt_timeout(Duration::from_millis(500))
///     .name("payments")
///     .build()
///     .unwrap();
/// assert_eq!(layer.snapshot().max_attempts, 4);
/// ```
#[derive(Debug, Clone)]
pub struct RetryBuilder<C = DefaultClassifier, R = CloneRequest, H = NoHint> {
    config: RetryConfig,
    name: String,
    health: Option<HealthSignal>,
    error_hint: Option<ErrorHint>,
    classify: C,
    replay: R,
    hint: H,
}

impl RetryBuilder {
    /// A builder from a config (not validated until [`build`](Self::build)).
    pub fn from_config(config: RetryConfig) -> Self {
        RetryBuilder {
            config,
            name: "default".to_string(),
            health: None,
            error_hint: None,
            classify: DefaultClassifier,
            replay: CloneRequest,
            hint: NoHint,
        }
    }
}

impl<C, R, H> RetryBuilder<C, R, H> {
    /// Attempts per call, the first included.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = n;
        self
    }

    /// The wait before each retry.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// No retry starts later than this after the call began.
    pub fn max_elapsed(mut self, d: Duration) -> Self {
        self.config.max_elapsed = Some(d);
        self
    }

    /// Abandons each attempt after `d` (a retryable failure).
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.config.attempt_timeout = Some(d);
        self
    }

    /// Whether to wait at least as long as `Retry-After` hints say (default `true`).
    pub fn honor_retry_after(mut self, yes: bool) -> Self {
        self.config.honor_retry_after = yes;
        self
    }

    /// The longest `Retry-After` hint waited out (default 30 s, at most one hour); a
    /// longer hint ends the call at once with the answer that carried it.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.config.max_retry_after = d;
        self
    }

    /// The retry budget's settings.
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.config.budget = budget;
        self
    }

    /// No retry budget: every retry `max_attempts` allows happens.
    pub fn no_budget(mut self) -> Self {
        self.config.budget.enabled = false;
        self
    }

    /// The policy name for metrics and events.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// A health signal that tightens the budget (with `budget.unhealthy_ratio`).
    pub fn health_signal(mut self, health: HealthSignal) -> Self {
        self.health = Some(health);
        self
    }

    /// Reads a "retry after" hint from inner errors (such as another stage's rejection).
    pub fn retry_after_hint(mut self, hint: ErrorHint) -> Self {
        self.error_hint = Some(hint);
        self
    }

    /// Decides which results are retried ([`Classify`](tower_prism_core::Classify) over
    /// `Result<&Res, &BoxError>`; a closure works).
    pub fn classifier<C2>(self, classify: C2) -> RetryBuilder<C2, R, H> {
        RetryBuilder {
            config: self.config,
            name: self.name,
            health: self.health,
            error_hint: self.error_hint,
            classify,
            replay: self.replay,
            hint: self.hint,
        }
    }

    /// How requests are copied for retries (a closure `Fn(&Req) -> Option<Req>` works);
    /// needed when the request is not `Clone`.
    pub fn clone_request<R2>(self, replay: R2) -> RetryBuilder<C, R2, H> {
        RetryBuilder {
            config: self.config,
            name: self.name,
            health: self.health,
            error_hint: self.error_hint,
            classify: self.classify,
            replay,
            hint: self.hint,
        }
    }

    /// Reads a "retry after" hint from retryable responses (a closure works).
    pub fn response_hint<H2>(self, hint: H2) -> RetryBuilder<C, R, H2> {
        RetryBuilder {
            config: self.config,
            name: self.name,
            health: self.health,
            error_hint: self.error_hint,
            classify: self.classify,
            replay: self.replay,
            hint,
        }
    }

    /// For `http::Request<ReplayBody<B>>` -> `http::Response<_>` services: classify by
    /// status ([`HttpClassifier`], so 503s are retried), retry only idempotent requests
    /// with replayable bodies, and honour `Retry-After`.
    pub fn http(self) -> RetryBuilder<HttpClassifier, ReplayIdempotent, RetryAfterHeader> {
        self.classifier(HttpClassifier)
            .clone_request(ReplayIdempotent)
            .response_hint(RetryAfterHeader)
    }

    /// Validates the config and builds the layer.
    pub fn build(self) -> Result<RetryLayer<C, R, H>, ConfigError> {
        self.config.validate()?;
        let budget = match &self.health {
            Some(h) => RetryBudget::with_health(&self.config.budget, h),
            None => RetryBudget::new(&self.config.budget),
        };
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let shared = Shared {
            metrics: Metrics::new(&self.name),
            name: self.name,
            settings: SharedSettings::new(Settings::from_config(&self.config)),
            budget,
            error_hint: self.error_hint,
            rng: AtomicU64::new(seed),
            retries: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
        };
        Ok(RetryLayer {
            shared: Arc::new(shared),
            classify: self.classify,
            replay: self.replay,
            hint: self.hint,
        })
    }
}
