//! [`CircuitBreakerLayer`].

use tower_layer::Layer;
use tower_prism_core::{DefaultClassifier, HealthSignal};

use crate::config::BreakerConfig;
use crate::service::CircuitBreaker;
use crate::state::Breaker;

/// Wraps services in a [`CircuitBreaker`]. Every service this layer makes (and every clone
/// of the layer) shares one [`Breaker`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    breaker: Breaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer with a new, closed breaker; results are classified by [`DefaultClassifier`]
    /// (`Err` is a retryable failure).
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_breaker(Breaker::new(config))
    }

    /// A layer over an existing breaker (e.g. one shared by several routes).
    pub fn with_breaker(breaker: Breaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: DefaultClassifier,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Classifies results with `classifier` (a [`Classify`](tower_prism_core::Classify)
    /// impl such as [`HttpClassifier`](tower_prism_core::HttpClassifier), or a closure
    /// `Fn(Result<&Res, &E>) -> Outcome`).
    pub fn classify<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// Publishes every call's outcome and the circuit's open/closed state to `health`.
    ///
    /// This builds a fresh breaker from the current one's config: call it while building
    /// the layer, before it is cloned or its breaker handed out.
    pub fn health(self, health: HealthSignal) -> Self {
        CircuitBreakerLayer {
            breaker: Breaker::with_health(self.breaker.config(), health),
            classifier: self.classifier,
        }
    }

    /// The shared breaker: [`snapshot`](Breaker::snapshot),
    /// [`force_open`](Breaker::force_open), [`disable`](Breaker::disable),
    /// [`reset`](Breaker::reset), [`reconfigure`](Breaker::reconfigure).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_parts(inner, self.breaker.clone(), self.classifier.clone())
    }
}
