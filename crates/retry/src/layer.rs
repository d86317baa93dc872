//! [`RetryLayer`] and its builder.

use std::sync::Arc;

use tower_layer::Layer;
use tower_prism_core::config::ConfigError;
use tower_prism_core::{DefaultClassifier, HealthSignal, HttpClassifier};

use crate::budget::RetryBudget;
use crate::config::RetryConfig;
use crate::handle::RetryHandle;
use crate::hint::{ErrorHint, NoHint};
use crate::http::ReplayIdempotent;
use crate::replay::CloneRequest;
use crate::retry_after::RetryAfterHeader;
use crate::service::{Engaged, Retry};
use crate::stage::Stage;

/// Retries failed calls of the services it wraps. Every service it makes (and every clone
/// of those) shares one [`RetryHandle`]: one budget and one set of settings.
///
/// `C` classifies results ([`Classify`](tower_prism_core::Classify) over
/// `Result<&Res, &BoxError>`), `R` copies requests for retries
/// ([`ReplayRequest`](crate::ReplayRequest)), `H` reads hints from responses
/// ([`ResponseHint`](crate::ResponseHint)).
///
/// ```
/// use std::time::Duration;
/// use tower_prism_retry::{Backoff, RetryConfig, RetryLayer};
///
/// let config = RetryConfig::builder()
///     .max_attempts(4)
///     .backoff(Backoff::exponential(Duration::from_millis(20), Duration::from_secs(1)))
///     .max_elapsed(Duration::from_secs(3))
///     .attempt_timeout(Duration::from_millis(500))
///     .build()
///     .unwrap();
/// let layer = RetryLayer::builder(config).name("payments").build().unwrap();
/// assert_eq!(layer.handle().snapshot().max_attempts, 4);
/// assert_eq!(layer.handle().name(), "payments");
/// ```
#[derive(Debug, Clone)]
pub struct RetryLayer<C = DefaultClassifier, R = CloneRequest, H = NoHint> {
    handle: RetryHandle,
    classify: C,
    replay: R,
    hint: H,
}

impl RetryLayer {
    /// A layer from a config, with the default classifier and `Clone` requests.
    pub fn from_config(config: &RetryConfig) -> Result<Self, ConfigError> {
        Self::builder(config.clone()).build()
    }

    /// A builder for what a config file cannot say: the name, the classifier, how
    /// requests are copied, where hints come from.
    pub fn builder(config: RetryConfig) -> RetryLayerBuilder {
        RetryLayerBuilder {
            config,
            name: "default".to_string(),
            health: None,
            error_hint: None,
            exclusive_hedging: false,
            classify: DefaultClassifier,
            replay: CloneRequest,
            hint: NoHint,
        }
    }
}

impl<C, R, H> RetryLayer<C, R, H> {
    /// The retry stage's shared state: name, config, budget, snapshot, reconfigure.
    pub fn handle(&self) -> &RetryHandle {
        &self.handle
    }
}

impl<S, C: Clone, R: Clone, H: Clone> Layer<S> for RetryLayer<C, R, H> {
    type Service = Retry<S, C, R, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::engaged(
            inner,
            Engaged {
                stage: Arc::new(Stage::new(self.handle.clone())),
                classify: self.classify.clone(),
                replay: self.replay.clone(),
                hint: self.hint.clone(),
                avoid_tried: false,
            },
        )
    }
}

/// Builds a [`RetryLayer`] from a [`RetryConfig`] and the parts only code can give.
#[derive(Debug, Clone)]
pub struct RetryLayerBuilder<C = DefaultClassifier, R = CloneRequest, H = NoHint> {
    config: RetryConfig,
    name: String,
    health: Option<HealthSignal>,
    error_hint: Option<ErrorHint>,
    exclusive_hedging: bool,
    classify: C,
    replay: R,
    hint: H,
}

impl<C, R, H> RetryLayerBuilder<C, R, H> {
    /// The policy name for metrics and events (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// A health signal that tightens the budget (with `budget.unhealthy_ratio`).
    pub fn health(mut self, health: HealthSignal) -> Self {
        self.health = Some(health);
        self
    }

    /// Reads a "retry after" hint from inner errors (such as another stage's rejection).
    pub fn retry_after_hint(mut self, hint: ErrorHint) -> Self {
        self.error_hint = Some(hint);
        self
    }

    /// Whether the stage hedges or retries, never both (default `false`: a hedged round
    /// may be retried). With `true`, a config with `hedge` and `max_attempts` over 1 is
    /// refused, naming `max_attempts`, by [`build`](Self::build) and by the handle's
    /// [`check`](crate::RetryHandle::check) and
    /// [`reconfigure`](crate::RetryHandle::reconfigure): as gRFC A6 has a gRPC method
    /// carry a retry policy or a hedging policy, so that a call's attempts are bounded by
    /// one count, not by `max_attempts` rounds of `1 + max_hedged`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_prism_retry::{HedgeConfig, RetryConfig, RetryLayer};
    ///
    /// let hedge = HedgeConfig::fixed(Duration::from_millis(20)).max_hedged(4);
    /// let both = RetryConfig::builder().max_attempts(3).hedge(hedge.clone()).build().unwrap();
    /// let err = RetryLayer::builder(both.clone()).exclusive_hedging(true).build().unwrap_err();
    /// assert_eq!(err.field(), "max_attempts");
    ///
    /// let hedging = RetryConfig::builder().max_attempts(1).hedge(hedge).build().unwrap();
    /// let layer = RetryLayer::builder(hedging).exclusive_hedging(true).build().unwrap();
    /// assert!(layer.handle().reconfigure(&both).is_err());
    /// ```
    pub fn exclusive_hedging(mut self, exclusive: bool) -> Self {
        self.exclusive_hedging = exclusive;
        self
    }

    /// Decides which results are retried ([`Classify`](tower_prism_core::Classify) over
    /// `Result<&Res, &BoxError>`; a closure works). Only `Failure { retryable: true }` is.
    pub fn classify<C2>(self, classify: C2) -> RetryLayerBuilder<C2, R, H> {
        RetryLayerBuilder {
            config: self.config,
            name: self.name,
            health: self.health,
            error_hint: self.error_hint,
            exclusive_hedging: self.exclusive_hedging,
            classify,
            replay: self.replay,
            hint: self.hint,
        }
    }

    /// How requests are copied for retries (a [`ReplayRequest`](crate::ReplayRequest);
    /// a closure `Fn(&Req) -> Option<Req>` works); needed when the request is not `Clone`.
    pub fn clone_request<R2>(self, replay: R2) -> RetryLayerBuilder<C, R2, H> {
        RetryLayerBuilder {
            config: self.config,
            name: self.name,
            health: self.health,
            error_hint: self.error_hint,
            exclusive_hedging: self.exclusive_hedging,
            classify: self.classify,
            replay,
            hint: self.hint,
        }
    }

    /// Reads a "retry after" hint from retryable responses (a
    /// [`ResponseHint`](crate::ResponseHint); a closure works).
    pub fn response_hint<H2>(self, hint: H2) -> RetryLayerBuilder<C, R, H2> {
        RetryLayerBuilder {
            config: self.config,
            name: self.name,
            health: self.health,
            error_hint: self.error_hint,
            exclusive_hedging: self.exclusive_hedging,
            classify: self.classify,
            replay: self.replay,
            hint,
        }
    }

    /// For `http::Request<ReplayBody<B>>` -> `http::Response<_>` services: classify by
    /// status ([`HttpClassifier`], so 503s are retried), retry only idempotent requests
    /// with replayable bodies ([`ReplayIdempotent`]), and honour `Retry-After`
    /// ([`RetryAfterHeader`]).
    pub fn http(self) -> RetryLayerBuilder<HttpClassifier, ReplayIdempotent, RetryAfterHeader> {
        self.classify(HttpClassifier)
            .clone_request(ReplayIdempotent)
            .response_hint(RetryAfterHeader)
    }

    /// Validates the config and builds the layer.
    pub fn build(self) -> Result<RetryLayer<C, R, H>, ConfigError> {
        self.config.validate()?;
        if self.exclusive_hedging {
            self.config.check_exclusive_hedging()?;
        }
        let budget = match &self.health {
            Some(h) => RetryBudget::with_health(&self.config.budget, h),
            None => RetryBudget::new(&self.config.budget),
        };
        Ok(RetryLayer {
            handle: RetryHandle::new(
                self.name,
                &self.config,
                budget,
                self.error_hint,
                self.exclusive_hedging,
            ),
            classify: self.classify,
            replay: self.replay,
            hint: self.hint,
        })
    }
}
