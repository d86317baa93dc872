//! [`ReliabilityLayer`]: the whole stack as one tower layer.

use std::fmt;
use std::sync::Arc;

use tower::util::Either;
use tower_layer::Layer;
use tower_prism_core::HealthSignal;

use crate::builder::ReliabilityLayerBuilder;
use crate::components::{self as c, BalanceLayer, BreakerLayer, RateLimitLayer, RetryLayer};
use crate::config::{ConfigFileError, PolicyConfig, ReliabilityConfig};
use crate::stack::{BoxErrors, Reliable};

/// The whole reliability stack as one layer: rate limit -> circuit breaker -> retry ->
/// balance -> your service, each stage optional, in that order whatever order they were
/// configured in.
///
/// Every service made from one layer (and every clone of those) shares the same limiter,
/// breaker, retry budget and balancer state, so a layer is one *policy*. The stages feed
/// each other through one [`HealthSignal`] ([`health`](Self::health)).
#[derive(Clone)]
pub struct ReliabilityLayer {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) health: HealthSignal,
    pub(crate) rate_limit: Option<RateLimitLayer>,
    pub(crate) breaker: Option<BreakerLayer>,
    pub(crate) retry: Option<RetryLayer>,
    pub(crate) balance: Option<BalanceLayer>,
}

impl fmt::Debug for ReliabilityLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("ReliabilityLayer")
            .field("name", &s.name)
            .field("rate_limit", &s.rate_limit.is_some())
            .field("circuit_breaker", &s.breaker.is_some())
            .field("retry", &s.retry.is_some())
            .field("balance", &s.balance.is_some())
            .finish()
    }
}

impl ReliabilityLayer {
    /// A builder with no stage configured and the name `"default"`.
    pub fn builder() -> ReliabilityLayerBuilder {
        ReliabilityLayerBuilder::new()
    }

    /// The layer of policy `name` in a config file.
    ///
    /// ```
    /// use tower_prism::{ReliabilityConfig, ReliabilityLayer};
    ///
    /// let config = ReliabilityConfig::from_toml(r#"
    ///     [policy.payments.rate_limit]
    ///     rate = 100
    /// "#).unwrap();
    /// let layer = ReliabilityLayer::from_config(&config, "payments").unwrap();
    /// assert_eq!(layer.name(), "payments");
    /// assert!(ReliabilityLayer::from_config(&config, "search").is_err());
    /// ```
    pub fn from_config(
        config: &ReliabilityConfig,
        name: &str,
    ) -> Result<ReliabilityLayer, ConfigFileError> {
        let policy = config.get(name)?;
        Self::from_policy(name, policy)
    }

    /// The layer of one policy's config, named `name`.
    pub fn from_policy(
        name: &str,
        policy: &PolicyConfig,
    ) -> Result<ReliabilityLayer, ConfigFileError> {
        let mut builder = ReliabilityLayer::builder().name(name);
        builder.policy = policy.clone();
        builder
            .build()
            .map_err(|e| ConfigFileError::Invalid(e.in_section(&format!("policy.{name}"))))
    }

    /// The policy name, the `name` label of every metric of this stack.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The health signal the stages share: the breaker and the balancer publish to it, the
    /// adaptive limiter and the retry budget read it. Subscribe for your own view.
    pub fn health(&self) -> &HealthSignal {
        &self.shared.health
    }

    /// Applies a new config for this policy to the running stages (every service already
    /// made from this layer): limits, thresholds, backoff. Requests in flight carry on.
    ///
    /// The whole policy is validated first; on any error nothing changes. A config that adds
    /// or removes a stage is refused ([`ConfigFileError::ShapeChanged`]): the stack's shape is
    /// fixed when it is built.
    pub fn reconfigure(&self, policy: &PolicyConfig) -> Result<(), ConfigFileError> {
        let name = &self.shared.name;
        policy
            .validate()
            .map_err(|e| ConfigFileError::Invalid(e.in_section(&format!("policy.{name}"))))?;
        let s = &self.shared;
        let shape = |stage, running: bool, wanted: bool| {
            if running == wanted {
                Ok(())
            } else {
                Err(ConfigFileError::ShapeChanged {
                    policy: name.clone(),
                    stage,
                    change: if wanted { "add" } else { "remove" },
                })
            }
        };
        shape(
            "rate_limit",
            s.rate_limit.is_some(),
            policy.rate_limit.is_some(),
        )?;
        shape(
            "circuit_breaker",
            s.breaker.is_some(),
            policy.circuit_breaker.is_some(),
        )?;
        shape("retry", s.retry.is_some(), policy.retry.is_some())?;
        shape("balance", s.balance.is_some(), policy.balance.is_some())?;
        let in_policy = |e: tower_prism_core::ConfigError, stage: &str| {
            ConfigFileError::Invalid(e.in_section(stage).in_section(&format!("policy.{name}")))
        };
        if let (Some(layer), Some(config)) = (&s.rate_limit, &policy.rate_limit) {
            c::reconfigure_rate_limit(layer, config).map_err(|e| in_policy(e, "rate_limit"))?;
        }
        if let (Some(layer), Some(config)) = (&s.breaker, &policy.circuit_breaker) {
            c::reconfigure_breaker(layer, config).map_err(|e| in_policy(e, "circuit_breaker"))?;
        }
        if let (Some(layer), Some(config)) = (&s.retry, &policy.retry) {
            c::reconfigure_retry(layer, config).map_err(|e| in_policy(e, "retry"))?;
        }
        if let (Some(layer), Some(config)) = (&s.balance, &policy.balance) {
            c::reconfigure_balance(layer, config).map_err(|e| in_policy(e, "balance"))?;
        }
        tracing::info!(policy = %name, "reliability policy reconfigured");
        Ok(())
    }

    /// The stack over several endpoints, balanced by the balance stage (with the default
    /// balance config when none was given).
    pub fn layer_endpoints<S>(&self, endpoints: impl IntoIterator<Item = S>) -> Reliable<S> {
        let balancer = match &self.shared.balance {
            Some(layer) => layer.clone(),
            None => c::balance_layer(&self.shared.name, &Default::default(), &self.shared.health)
                .expect("the default balance config is valid"),
        };
        let bottom = Either::Left(c::balance_over(&balancer, endpoints.into_iter().collect()));
        self.stack(bottom)
    }

    fn stack<S>(&self, bottom: crate::stack::BalanceStage<S>) -> Reliable<S> {
        let s = &self.shared;
        let retry = match &s.retry {
            Some(layer) => Either::Left(layer.layer(bottom)),
            None => Either::Right(bottom),
        };
        let breaker = match &s.breaker {
            Some(layer) => Either::Left(layer.layer(retry)),
            None => Either::Right(retry),
        };
        let limited = match &s.rate_limit {
            Some(layer) => Either::Left(layer.layer(breaker)),
            None => Either::Right(breaker),
        };
        Reliable { inner: limited }
    }
}

impl<S> Layer<S> for ReliabilityLayer {
    type Service = Reliable<S>;

    /// The stack over one inner service (a balancer of one endpoint when the balance stage
    /// is configured; see [`layer_endpoints`](ReliabilityLayer::layer_endpoints) for more).
    fn layer(&self, inner: S) -> Reliable<S> {
        let bottom = match &self.shared.balance {
            Some(layer) => Either::Left(c::balance_over(layer, vec![inner])),
            None => Either::Right(BoxErrors::new(inner)),
        };
        self.stack(bottom)
    }
}
