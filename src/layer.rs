//! [`ReliabilityLayer`]: the whole stack as one tower layer.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tower::util::Either;
use tower_layer::Layer;
use tower_prism_balance::{Balance, BalanceBuilder};
use tower_prism_core::{ConfigError, HealthSignal};

use crate::builder::ReliabilityLayerBuilder;
use crate::components::{
    self as c, BalanceConfig, BreakerLayer, ConcurrencyLayer, RateLimitLayer, ReloadBalancer,
    RetryLayer,
};
use crate::config::{
    bounded_name, policy_section, ConfigFileError, PolicyConfig, ReliabilityConfig,
};
use crate::profile::{Generic, Profile};
use crate::stack::{BoxErrors, Reliable};

/// The whole reliability stack as one layer: rate limit -> (concurrency limit) -> circuit
/// breaker -> retry -> balance -> your service, each stage optional, in that order whatever
/// order they were configured in.
///
/// Every service made from one layer (and every clone of those) shares the same limiter,
/// breaker, retry budget and balancer state, so a layer is one *policy*. The stages feed
/// each other through one [`HealthSignal`] ([`health`](Self::health)).
///
/// The profile `P` ([`Generic`] unless the builder chose another) says how the breaker,
/// retry and balance stages classify results and replay requests.
pub struct ReliabilityLayer<P: Profile = Generic> {
    pub(crate) shared: Arc<Shared<P>>,
}

impl<P: Profile> Clone for ReliabilityLayer<P> {
    fn clone(&self) -> Self {
        ReliabilityLayer {
            shared: self.shared.clone(),
        }
    }
}

pub(crate) struct Shared<P: Profile> {
    pub(crate) name: String,
    pub(crate) profile: P,
    pub(crate) health: HealthSignal,
    pub(crate) rate_limit: Option<RateLimitLayer>,
    pub(crate) concurrency: Option<ConcurrencyLayer<P>>,
    pub(crate) breaker: Option<BreakerLayer<P>>,
    pub(crate) retry: Option<RetryLayer<P>>,
    /// The balance table and the balancers stacked with [`ReliabilityLayer::balanced`].
    pub(crate) balance: Mutex<BalanceStage>,
    /// Held by a reload from its checks to its last change, so two reloads never
    /// interleave (each is checked against the state it is applied to).
    pub(crate) reload: Mutex<()>,
}

/// The policy's balance table (the last one applied) and its running balancers.
pub(crate) struct BalanceStage {
    /// `None`: the policy has no balance table (its balancers run the defaults).
    pub(crate) config: Option<BalanceConfig>,
    pub(crate) balancers: Vec<Box<dyn ReloadBalancer>>,
}

impl BalanceStage {
    pub(crate) fn new(config: Option<BalanceConfig>) -> Self {
        BalanceStage {
            config,
            balancers: Vec::new(),
        }
    }
}

/// The stack over a balancer made by [`ReliabilityLayer::layer_endpoints`].
pub type Balanced<K, S, Req, P = Generic> =
    Reliable<Balance<K, S, Req, <P as Profile>::Classify>, P>;

/// What a [`ReliabilityLayer`]'s stages look like now (see [`ReliabilityLayer::snapshot`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The rate limiter's state, when the stack has one.
    pub rate_limit: Option<tower_prism_limit::Snapshot>,
    /// The concurrency limiter's state, when the stack has one.
    pub concurrency_limit: Option<tower_prism_limit::concurrency::ConcurrencySnapshot>,
    /// The circuit breaker's state, when the stack has one.
    pub circuit_breaker: Option<tower_prism_breaker::BreakerSnapshot>,
    /// The retry stage's settings and budget, when the stack has one.
    pub retry: Option<tower_prism_retry::RetrySnapshot>,
    /// Whether a breaker reported the upstream's circuit open on the shared health signal.
    pub circuit_open: bool,
    /// Balancers stacked with [`ReliabilityLayer::balanced`] (their handles give per-endpoint
    /// snapshots).
    pub balancers: usize,
}

impl<P: Profile> fmt::Debug for ReliabilityLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("ReliabilityLayer")
            .field("name", &s.name)
            .field("rate_limit", &s.rate_limit.is_some())
            .field("concurrency_limit", &s.concurrency.is_some())
            .field("circuit_breaker", &s.breaker.is_some())
            .field("retry", &s.retry.is_some())
            .field("balance", &s.balance_stage().config.is_some())
            .finish()
    }
}

impl ReliabilityLayer {
    /// A builder with no stage configured, the [`Generic`] profile and the name `"default"`.
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
        ReliabilityLayer::from_policy_as(name, policy, Generic)
    }
}

impl<P: Profile> ReliabilityLayer<P> {
    /// The layer of policy `name` in a config file, with the given [`Profile`] (e.g.
    /// [`HttpServer`](crate::HttpServer) for an axum route).
    pub fn from_config_as(
        config: &ReliabilityConfig,
        name: &str,
        profile: P,
    ) -> Result<ReliabilityLayer<P>, ConfigFileError> {
        Self::from_policy_as(name, config.get(name)?, profile)
    }

    /// The layer of one policy's config, named `name`, with the given [`Profile`].
    pub fn from_policy_as(
        name: &str,
        policy: &PolicyConfig,
        profile: P,
    ) -> Result<ReliabilityLayer<P>, ConfigFileError> {
        ReliabilityLayer::builder()
            .name(name)
            .profile(profile)
            .policy(policy.clone())
            .build()
            .map_err(|e| ConfigFileError::Invalid(e.in_section(&policy_section(name))))
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

    /// A cheap view of the running stages, for health endpoints, dashboards and tests.
    pub fn snapshot(&self) -> Snapshot {
        let s = &self.shared;
        Snapshot {
            rate_limit: s.rate_limit.as_ref().map(|l| l.limiter().snapshot()),
            concurrency_limit: s.concurrency.as_ref().map(|l| l.limiter().snapshot()),
            circuit_breaker: s.breaker.as_ref().map(|l| l.breaker().snapshot()),
            retry: s.retry.as_ref().map(|l| l.snapshot()),
            circuit_open: s.health.is_circuit_open(),
            balancers: s.balance_stage().balancers.len(),
        }
    }

    /// Applies a new config for this policy to the running stages (every service already
    /// made from this layer): limits, thresholds, backoff. Requests in flight carry on.
    ///
    /// All or nothing: the whole policy is checked first (every value, and what the running
    /// stages can take), and on any error nothing changes. A config that adds or removes a
    /// stage table (`balance` included) is refused ([`ConfigFileError::ShapeChanged`]): the
    /// stack's shape is fixed when it is built. So is a new `clock` for a running limiter or
    /// breaker, or a new breaker `window` ([`ConfigFileError::Invalid`] naming the field).
    pub fn reconfigure(&self, policy: &PolicyConfig) -> Result<(), ConfigFileError> {
        let _one_at_a_time = self.reload_lock();
        self.check(policy)?;
        self.apply(policy);
        Ok(())
    }

    /// Serializes reloads of this layer (see [`Shared::reload`]).
    pub(crate) fn reload_lock(&self) -> MutexGuard<'_, ()> {
        self.shared.reload.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything [`apply`](Self::apply) could refuse, checked without changing anything:
    /// the values, the shape, the clocks and the breaker window, and each running
    /// balancer's own check (e.g. `consistent_hash` needs a key function).
    pub(crate) fn check(&self, policy: &PolicyConfig) -> Result<(), ConfigFileError> {
        let name = &self.shared.name;
        policy
            .validate()
            .map_err(|e| ConfigFileError::Invalid(e.in_section(&policy_section(name))))?;
        self.check_shape(policy)?;
        let s = &self.shared;
        let invalid = |section: &str, error: ConfigError| {
            ConfigFileError::Invalid(error.in_section(section).in_section(&policy_section(name)))
        };
        // A running limiter or breaker keeps its clock (the times it stores are on it), and
        // a running breaker its window (its slots are allocated once): the breaker's own
        // check says so.
        if let (Some(layer), Some(config)) = (&s.rate_limit, &policy.rate_limit) {
            config
                .clock
                .check_unchanged(layer.limiter().clock(), "limiter")
                .map_err(|e| invalid("rate_limit", e))?;
        }
        if let (Some(layer), Some(config)) = (&s.breaker, &policy.circuit_breaker) {
            c::check_breaker(layer, config).map_err(|e| invalid("circuit_breaker", e))?;
        }
        if let Some(config) = &policy.balance {
            for balancer in &s.balance_stage().balancers {
                balancer.check(config).map_err(|e| invalid("balance", e))?;
            }
        }
        Ok(())
    }

    /// Applies a policy that [`check`](Self::check) accepted, stage by stage.
    pub(crate) fn apply(&self, policy: &PolicyConfig) {
        let s = &self.shared;
        let name = &s.name;
        // After `check`, no stage refuses: an error here is a bug in `check`, logged
        // (and caught by the reload tests) rather than returned half-applied.
        let report = |stage: &str, result: Result<(), ConfigError>| {
            if let Err(e) = result {
                debug_assert!(
                    false,
                    "policy {name}: {stage} refused a checked config: {e}"
                );
                tracing::error!(policy = %name, stage, error = %e, "a checked reload was refused");
            }
        };
        if let (Some(layer), Some(config)) = (&s.rate_limit, &policy.rate_limit) {
            report("rate_limit", c::reconfigure_rate_limit(layer, config));
        }
        if let (Some(layer), Some(config)) = (&s.concurrency, &policy.concurrency_limit) {
            report(
                "concurrency_limit",
                c::reconfigure_concurrency(layer, config),
            );
        }
        if let (Some(layer), Some(config)) = (&s.breaker, &policy.circuit_breaker) {
            report("circuit_breaker", c::reconfigure_breaker(layer, config));
        }
        if let (Some(layer), Some(config)) = (&s.retry, &policy.retry) {
            report("retry", c::reconfigure_retry(layer, config));
        }
        let mut balance = s.balance_stage();
        if let Some(config) = &policy.balance {
            for balancer in &balance.balancers {
                report("balance", balancer.apply(config));
            }
            balance.config = Some(config.clone());
        }
        drop(balance);
        tracing::info!(policy = %name, "reliability policy reconfigured");
    }

    /// A balancer builder for this policy: its name, its balance config (the last one
    /// applied, or the default one when the policy has no balance table) and the shared
    /// health signal are set; add the endpoints (and a classifier, a health check...) and
    /// [`build`](BalanceBuilder::build) it, then stack it with [`balanced`](Self::balanced).
    pub fn balancer<K, S, Req>(&self) -> BalanceBuilder<K, S, Req, P::Classify> {
        let s = &self.shared;
        Balance::builder()
            .config(s.balance_stage().config.clone().unwrap_or_default())
            .name(s.name.clone())
            .health(s.health.clone())
            .classify(s.profile.classify())
    }

    /// Refuses a policy that adds or removes a stage table of this running stack.
    fn check_shape(&self, policy: &PolicyConfig) -> Result<(), ConfigFileError> {
        let name = &self.shared.name;
        let s = &self.shared;
        let shape = |stage, running: bool, wanted: bool| {
            if running == wanted {
                Ok(())
            } else {
                Err(ConfigFileError::ShapeChanged {
                    policy: bounded_name(name),
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
            "concurrency_limit",
            s.concurrency.is_some(),
            policy.concurrency_limit.is_some(),
        )?;
        shape(
            "circuit_breaker",
            s.breaker.is_some(),
            policy.circuit_breaker.is_some(),
        )?;
        shape("retry", s.retry.is_some(), policy.retry.is_some())?;
        shape(
            "balance",
            s.balance_stage().config.is_some(),
            policy.balance.is_some(),
        )
    }

    /// The stack over a balancer (the balance stage): the limits -> breaker -> retry ->
    /// `balance`. The balancer joins this policy's hot reload.
    pub fn balanced<K, S, Req, C>(
        &self,
        balance: Balance<K, S, Req, C>,
    ) -> Reliable<Balance<K, S, Req, C>, P>
    where
        K: Send + Sync + 'static,
        S: Send + 'static,
    {
        let handle = balance.handle().clone();
        // Never between a reload's check and its apply: the new balancer was not checked.
        let _no_reload_now = self.reload_lock();
        self.shared.balance_stage().balancers.push(Box::new(handle));
        self.layer(balance)
    }

    /// The stack over a new balancer of `endpoints` (keyed, e.g. by address), classifying
    /// with the profile's classifier. Use
    /// [`balancer`](Self::balancer) and [`balanced`](Self::balanced) for more control.
    pub fn layer_endpoints<K, S, Req>(
        &self,
        endpoints: impl IntoIterator<Item = (K, S)>,
    ) -> Result<Balanced<K, S, Req, P>, tower_prism_balance::Error>
    where
        K: Eq + std::hash::Hash + fmt::Display + Clone + Send + Sync + 'static,
        S: Send + 'static,
    {
        let balance = self.balancer().endpoints(endpoints).build()?;
        Ok(self.balanced(balance))
    }

    fn stack<S>(&self, bottom: BoxErrors<S>) -> Reliable<S, P> {
        let s = &self.shared;
        let retry = match &s.retry {
            Some(layer) => Either::Left(layer.layer(bottom)),
            None => Either::Right(bottom),
        };
        let breaker = match &s.breaker {
            Some(layer) => Either::Left(layer.layer(retry)),
            None => Either::Right(retry),
        };
        let concurrency = match &s.concurrency {
            Some(layer) => Either::Left(layer.layer(breaker)),
            None => Either::Right(breaker),
        };
        let limited = match &s.rate_limit {
            Some(layer) => Either::Left(layer.layer(concurrency)),
            None => Either::Right(concurrency),
        };
        Reliable { inner: limited }
    }
}

impl<P: Profile> Shared<P> {
    pub(crate) fn balance_stage(&self) -> MutexGuard<'_, BalanceStage> {
        self.balance.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S, P: Profile> Layer<S> for ReliabilityLayer<P> {
    type Service = Reliable<S, P>;

    fn layer(&self, inner: S) -> Reliable<S, P> {
        self.stack(BoxErrors::new(inner))
    }
}
