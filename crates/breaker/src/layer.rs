//! [`CircuitBreakerLayer`] and its builder.

use std::time::Duration;

use tower_layer::Layer;
use tower_prism_core::{ConfigError, DefaultClassifier, HealthSignal};

use crate::breaker::Breaker;
use crate::config::BreakerConfig;
use crate::service::CircuitBreaker;

/// The policy name a layer gets when its builder is given none.
const DEFAULT_NAME: &str = "default";

/// Reads how long an error asks the caller to wait (a rate limiter's `RateLimited {
/// retry_after }`...): [`CircuitBreakerLayerBuilder::retry_after_hint`].
pub(crate) type ErrorHint = fn(&(dyn std::error::Error + 'static)) -> Option<Duration>;

/// Wraps services in a [`CircuitBreaker`]. Every service this layer makes (and every clone
/// of the layer) shares one [`Breaker`], reached with [`handle`](Self::handle).
///
/// ```
/// use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer};
/// use tower_prism_core::{HealthSignal, HttpClassifier};
///
/// // the plain way
/// let layer = CircuitBreakerLayer::from_config(&BreakerConfig::default()).unwrap();
/// assert_eq!(layer.handle().name(), "default");
///
/// // with what a config file cannot say
/// let health = HealthSignal::new();
/// let layer = CircuitBreakerLayer::builder(BreakerConfig::default())
///     .name("payments")
///     .classify(HttpClassifier)
///     .health(health)
///     .build()
///     .unwrap();
/// assert_eq!(layer.handle().name(), "payments");
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    breaker: Breaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer with a new, closed breaker named `"default"`; results are classified by
    /// [`DefaultClassifier`] (`Err` is a retryable failure).
    pub fn from_config(config: &BreakerConfig) -> Result<Self, ConfigError> {
        Self::builder(config.clone()).build()
    }

    /// A builder for a layer with a new breaker: [`name`](CircuitBreakerLayerBuilder::name),
    /// [`classify`](CircuitBreakerLayerBuilder::classify),
    /// [`health`](CircuitBreakerLayerBuilder::health).
    pub fn builder(config: BreakerConfig) -> CircuitBreakerLayerBuilder {
        CircuitBreakerLayerBuilder {
            config,
            name: DEFAULT_NAME.to_owned(),
            classifier: DefaultClassifier,
            health: None,
            error_hint: None,
        }
    }

    /// A layer over an existing breaker (e.g. one shared by several routes), with the
    /// [`DefaultClassifier`]; [`classify`](Self::classify) sets another.
    pub fn from_handle(breaker: Breaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: DefaultClassifier,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// The same breaker, classifying results with `classifier` instead (for a layer made
    /// with [`from_handle`](CircuitBreakerLayer::from_handle); a new breaker's layer sets it
    /// on its [builder](CircuitBreakerLayerBuilder::classify)).
    pub fn classify<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The shared breaker: [`snapshot`](Breaker::snapshot),
    /// [`force_open`](Breaker::force_open), [`disable`](Breaker::disable),
    /// [`reset`](Breaker::reset), [`reconfigure`](Breaker::reconfigure).
    pub fn handle(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}

/// Builds a [`CircuitBreakerLayer`] with a new breaker, from
/// [`CircuitBreakerLayer::builder`]: what a config file cannot say.
#[derive(Debug, Clone)]
#[must_use = "call `build()` to get the layer"]
pub struct CircuitBreakerLayerBuilder<C = DefaultClassifier> {
    config: BreakerConfig,
    name: String,
    classifier: C,
    health: Option<HealthSignal>,
    error_hint: Option<ErrorHint>,
}

impl<C> CircuitBreakerLayerBuilder<C> {
    /// Sets the policy name: the `name` label of the breaker's metrics, and its log events
    /// (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Classifies results with `classifier` (a [`Classify`](tower_prism_core::Classify)
    /// impl such as [`HttpClassifier`](tower_prism_core::HttpClassifier), or a closure
    /// `Fn(Result<&Res, &E>) -> Outcome`). Default: [`DefaultClassifier`].
    pub fn classify<C2>(self, classifier: C2) -> CircuitBreakerLayerBuilder<C2> {
        CircuitBreakerLayerBuilder {
            config: self.config,
            name: self.name,
            classifier,
            health: self.health,
            error_hint: self.error_hint,
        }
    }

    /// Publishes every call's outcome and the circuit's open/closed state to `health`.
    pub fn health(mut self, health: HealthSignal) -> Self {
        self.health = Some(health);
        self
    }

    /// Reads how long an inner error asks the caller to wait (for example a rate limiter's
    /// `RateLimited { retry_after }` below the breaker). When an error opens the circuit
    /// and `hint` reads a wait from it, the circuit stays open that long instead of its
    /// computed wait (clamped to [[`MIN_HINTED_WAIT`](crate::MIN_HINTED_WAIT),
    /// [`effective_max_hinted_wait`](BreakerConfig::effective_max_hinted_wait)]). Asked only on a
    /// failure that opens the circuit. Default: errors carry no hint. (A response's hint
    /// comes from the classifier's [`Classify::retry_after`](tower_prism_core::Classify::retry_after):
    /// [`HttpClassifier`](tower_prism_core::HttpClassifier) reads `Retry-After`.)
    ///
    /// The `tower-prism` facade passes its `retry_after_hint`, which knows every stage's
    /// rejection.
    pub fn retry_after_hint(
        mut self,
        hint: fn(&(dyn std::error::Error + 'static)) -> Option<Duration>,
    ) -> Self {
        self.error_hint = Some(hint);
        self
    }

    /// The layer, with a new, closed breaker; an error names the config field it refuses.
    pub fn build(self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        self.config.validate()?;
        Ok(CircuitBreakerLayer {
            breaker: Breaker::build(self.name, &self.config, self.health, self.error_hint),
            classifier: self.classifier,
        })
    }
}
