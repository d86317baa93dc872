//! [`ReliabilityLayerBuilder`]: pick the stages, in any order.
//!
//! The builder makes layers, so it comes above the `layer` module in the module order
//! and [`ReliabilityLayer::builder`], the way in, is defined here.

use tower_prism_core::{ConfigError, HealthSignal};

use crate::components::{
    BalanceConfig, BreakerConfig, ConcurrencyConfig, DeadlineConfig, FaultConfig, RateLimitConfig,
    RetryConfig,
};
use crate::config::PolicyConfig;
use crate::fallback::FallbackConfig;
use crate::layer::ReliabilityLayer;
use crate::profile::{Classified, Generic, Grpc, GrpcServer, Http, HttpServer, Profile};
use crate::stages::Stages;

impl ReliabilityLayer {
    /// A builder with no stage configured, the [`Generic`] profile and the name `"default"`.
    pub fn builder() -> ReliabilityLayerBuilder {
        ReliabilityLayerBuilder::new()
    }
}

/// Builds a [`ReliabilityLayer`]. Each stage is optional; the stack's order is fixed
/// (rate limit -> concurrency limit -> deadline -> circuit breaker -> retry -> balance ->
/// fault injection) whatever order these methods are called in; the fallback is a layer of its own above them
/// ([`ReliabilityLayer::fallback`]).
///
/// The [`Profile`] (by default [`Generic`]) says what the calls are: pick
/// [`http`](Self::http) for an HTTP client, [`http_server`](Self::http_server) for an HTTP
/// server, or [`classify`](Self::classify) for your own classifier.
#[derive(Debug, Clone)]
pub struct ReliabilityLayerBuilder<P = Generic> {
    name: String,
    health: Option<HealthSignal>,
    profile: P,
    policy: PolicyConfig,
}

impl Default for ReliabilityLayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReliabilityLayerBuilder {
    /// No stage, name `"default"`.
    pub fn new() -> Self {
        ReliabilityLayerBuilder {
            name: "default".to_owned(),
            health: None,
            profile: Generic,
            policy: PolicyConfig::default(),
        }
    }
}

impl<P: Profile> ReliabilityLayerBuilder<P> {
    /// Uses `profile` for the calls of this stack (see [`Profile`]).
    pub fn profile<P2: Profile>(self, profile: P2) -> ReliabilityLayerBuilder<P2> {
        ReliabilityLayerBuilder {
            name: self.name,
            health: self.health,
            profile,
            policy: self.policy,
        }
    }

    /// An HTTP client stack ([`Http`]): status-based classification, idempotent requests
    /// with a [`ReplayBody`](tower_prism_retry::ReplayBody) retried, `Retry-After` honoured.
    pub fn http(self) -> ReliabilityLayerBuilder<Http> {
        self.profile(Http)
    }

    /// An HTTP server stack ([`HttpServer`]): status-based classification, any body type,
    /// no retry stage.
    pub fn http_server(self) -> ReliabilityLayerBuilder<HttpServer> {
        self.profile(HttpServer)
    }

    /// A gRPC client stack ([`Grpc`]): classified by `grpc-status`, `UNAVAILABLE` and
    /// `RESOURCE_EXHAUSTED` retried (give [`profile`](Self::profile) a
    /// [`Grpc::retry_on`] for more), `grpc-retry-pushback-ms` honoured, requests from a
    /// [`BoxedReplayLayer`](tower_prism_retry::BoxedReplayLayer) replayed, at most 5
    /// attempts per call (gRFC A6; a larger `retry.max_attempts` runs as 5, a larger
    /// `retry.hedge.max_hedged` as 4), retries or hedging but not both (`retry.hedge`
    /// needs `retry.max_attempts = 1`).
    pub fn grpc(self) -> ReliabilityLayerBuilder<Grpc> {
        self.profile(Grpc::new())
    }

    /// A gRPC server stack ([`GrpcServer`]): classified by `grpc-status`, no retry stage.
    pub fn grpc_server(self) -> ReliabilityLayerBuilder<GrpcServer> {
        self.profile(GrpcServer)
    }

    /// Classifies results with `classify` (a closure over `Result<&Res, &BoxError>` or any
    /// [`Classify`](tower_prism_core::Classify)) in the breaker, retry and balance stages.
    pub fn classify<C: Clone + Send + Sync + 'static>(
        self,
        classify: C,
    ) -> ReliabilityLayerBuilder<Classified<C>> {
        self.profile(Classified(classify))
    }

    /// Sets every stage from one policy's config (replacing stages set before).
    pub fn policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// The policy name: the `name` label of every metric and the name in log events.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds the rate limiter (outermost: excess load is shed first).
    pub fn rate_limit(mut self, config: RateLimitConfig) -> Self {
        self.policy.rate_limit = Some(config);
        self
    }

    /// Adds the adaptive concurrency limit, right below the rate limiter: a cap on calls in
    /// flight that shrinks when latency or failures rise and grows while healthy.
    pub fn concurrency_limit(mut self, config: ConcurrencyConfig) -> Self {
        self.policy.concurrency_limit = Some(config);
        self
    }

    /// Adds the deadline, right below the limits: a total timeout over the breaker, every
    /// retry attempt and backoff and the balancer, and the request's own deadline (the
    /// earlier wins), written into the outgoing request for the next hop.
    pub fn deadline(mut self, config: DeadlineConfig) -> Self {
        self.policy.deadline = Some(config);
        self
    }

    /// Adds the circuit breaker (it sees one logical call, after retries).
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.policy.circuit_breaker = Some(config);
        self
    }

    /// Adds retries (above the balancer, so a retry can go to another endpoint).
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.policy.retry = Some(config);
        self
    }

    /// Adds the fallback answer, handed out by [`ReliabilityLayer::fallback`].
    pub fn fallback(mut self, config: FallbackConfig) -> Self {
        self.policy.fallback = Some(config);
        self
    }

    /// Sets the load balancer's config, used by the balancers made with
    /// [`ReliabilityLayer::balancer`] and [`ReliabilityLayer::layer_endpoints`] (the default
    /// config when not set).
    pub fn balance(mut self, config: BalanceConfig) -> Self {
        self.policy.balance = Some(config);
        self
    }

    /// Adds fault injection, innermost (around each endpoint of
    /// [`ReliabilityLayer::layer_endpoints`]): errors, aborted connections, statuses and
    /// latency at configured rates, for tests and game days.
    pub fn fault(mut self, config: FaultConfig) -> Self {
        self.policy.fault = Some(config);
        self
    }

    /// Shares an existing health signal (e.g. with another policy guarding the same
    /// upstream) instead of a new one.
    pub fn health(mut self, health: HealthSignal) -> Self {
        self.health = Some(health);
        self
    }

    /// Validates every stage's config and builds the layer. The error names the stage and
    /// field (`circuit_breaker.failure_rate_threshold`).
    pub fn build(self) -> Result<ReliabilityLayer<P>, ConfigError> {
        let health = self.health.unwrap_or_default();
        Stages::new(self.name, health, self.profile, &self.policy)
            .map(ReliabilityLayer::from_stages)
    }
}
