//! [`ReliabilityLayer`]: the whole stack as one tower layer.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;
use tower_prism_balance::{Balance, BalanceBuilder};
use tower_prism_core::HealthSignal;

use crate::components::FaultService;
use crate::config::{PolicyConfig, ReliabilityConfig};
use crate::config_error::ConfigFileError;
use crate::fallback::FallbackLayer;
use crate::names::policy_section;
use crate::profile::{Generic, Profile};
use crate::service::Reliability;
use crate::snapshot::Snapshot;
use crate::stages::{Below, Stages};

/// The whole reliability stack as one layer: rate limit -> concurrency limit -> deadline ->
/// circuit breaker -> retry -> balance -> fault injection -> your service, each stage
/// optional, in that order whatever order they were configured in. Its services are [`Reliability`]s. The policy's fallback
/// answer, outermost, is a layer of its own: [`fallback`](Self::fallback).
///
/// Every service made from one layer (and every clone of those) shares the same limiter,
/// breaker, retry budget and balancer state, so a layer is one *policy*. The stages feed
/// each other through one [`HealthSignal`] ([`health`](Self::health)).
///
/// The profile `P` ([`Generic`] unless the builder chose another) says how the breaker,
/// retry and balance stages classify results and replay requests.
pub struct ReliabilityLayer<P: Profile = Generic> {
    stages: Arc<Stages<P>>,
}

impl<P: Profile> Clone for ReliabilityLayer<P> {
    fn clone(&self) -> Self {
        ReliabilityLayer {
            stages: self.stages.clone(),
        }
    }
}

/// The stack over a balancer made by [`ReliabilityLayer::layer_endpoints`]: each endpoint
/// `S` is wrapped in the policy's fault stage.
pub type Balanced<K, S, Req, P = Generic> =
    Reliability<Balance<K, FaultService<S, P>, Req, <P as Profile>::Classify>, P>;

impl<P: Profile> fmt::Debug for ReliabilityLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stages;
        f.debug_struct("ReliabilityLayer")
            .field("name", &s.name)
            .field("fallback", &s.fallback.is_some())
            .field("rate_limit", &s.rate_limit.is_some())
            .field("concurrency_limit", &s.concurrency.is_some())
            .field("deadline", &s.deadline.is_some())
            .field("circuit_breaker", &s.breaker.is_some())
            .field("retry", &s.retry.is_some())
            .field("balance", &s.balance_stage().config.is_some())
            .field(
                "fault",
                &s.fault_table.load(std::sync::atomic::Ordering::Relaxed),
            )
            .finish()
    }
}

impl ReliabilityLayer {
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
        Self::from_policy(name, config.get(name)?)
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
    pub(crate) fn from_stages(stages: Stages<P>) -> Self {
        ReliabilityLayer {
            stages: Arc::new(stages),
        }
    }

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
        Stages::new(name.to_owned(), HealthSignal::new(), profile, policy)
            .map(Self::from_stages)
            .map_err(|e| ConfigFileError::Invalid(e.in_section(&policy_section(name))))
    }

    /// The policy name, the `name` label of every metric of this stack.
    pub fn name(&self) -> &str {
        &self.stages.name
    }

    /// The health signal the stages share: the breaker and the balancer publish to it, the
    /// adaptive limiter and the retry budget read it. Subscribe for your own view.
    pub fn health(&self) -> &HealthSignal {
        &self.stages.health
    }

    /// A cheap view of the running stages, for health endpoints, dashboards and tests.
    pub fn snapshot(&self) -> Snapshot {
        self.stages.snapshot()
    }

    /// Applies a new config for this policy to the running stages (every service already
    /// made from this layer): limits, thresholds, backoff. Requests in flight carry on.
    ///
    /// All or nothing: the whole policy is checked first (every value, and what the running
    /// stages can take), and on any error nothing changes. A config that adds or removes a
    /// stage table (`balance` included) is refused ([`ConfigFileError::ShapeChanged`]): the
    /// stack's shape is fixed when it is built. So is a new `clock` for a running limiter or
    /// breaker, a new breaker `window` or a new retry `budget.window`
    /// ([`ConfigFileError::Invalid`] naming the field).
    pub fn reconfigure(&self, policy: &PolicyConfig) -> Result<(), ConfigFileError> {
        self.stages.reconfigure(policy)
    }

    /// The policy's fallback answer (its `fallback` table) as a layer to put above the
    /// stack, or `None` when the policy has none. It answers the error kinds the table
    /// lists with its HTTP status, headers and body, for services of `http::Response<B>`
    /// with `B: From<String>` (axum's `Body`, http-body-util's `Full`, `String`); a reload
    /// of the policy reconfigures it.
    ///
    /// It is not part of [`Reliability`] because building an answer needs a bound on the
    /// response body that a client stack over hyper's `Incoming` cannot meet. For an
    /// answer made in code, use [`FallbackLayer::answer_with`] and its siblings.
    ///
    /// ```
    /// use tower::{service_fn, ServiceBuilder, ServiceExt};
    /// use tower_prism::{HttpServer, ReliabilityConfig, ReliabilityLayer};
    ///
    /// # tokio_test::block_on(async {
    /// let config = ReliabilityConfig::from_toml(r#"
    ///     [policy.search.circuit_breaker]
    ///     [policy.search.fallback]
    ///     on = ["inner"]
    ///     status = 200
    ///     body = "[]"
    /// "#).unwrap();
    /// let policy = ReliabilityLayer::from_config_as(&config, "search", HttpServer).unwrap();
    /// let service = ServiceBuilder::new()
    ///     .option_layer(policy.fallback())
    ///     .layer(policy)
    ///     .service(service_fn(|_req: http::Request<String>| async {
    ///         Err::<http::Response<String>, _>(std::io::Error::other("index down"))
    ///     }));
    /// let response = service.oneshot(http::Request::new(String::new())).await.unwrap();
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.body(), "[]");
    /// # });
    /// ```
    pub fn fallback(&self) -> Option<FallbackLayer> {
        self.stages.fallback.clone()
    }

    /// The running stages, for [`Policies`](crate::Policies)' reload of every policy at once.
    pub(crate) fn stages(&self) -> &Stages<P> {
        &self.stages
    }

    /// A balancer builder for this policy: its name, its balance config (the last one
    /// applied, or the default one when the policy has no balance table) and the shared
    /// health signal are set; add the endpoints (and a classifier, a health check...) and
    /// [`build`](BalanceBuilder::build) it, then stack it with [`balanced`](Self::balanced).
    /// The name (the policy's) is the `name` label of the balancer's metrics: give a
    /// second balancer running under the same policy a name of its own
    /// ([`BalanceBuilder::name`]), or the two write the same series.
    pub fn balancer<K, S, Req>(&self) -> BalanceBuilder<K, S, Req, P::Classify> {
        let s = &self.stages;
        Balance::builder()
            .config(s.balance_stage().config.clone().unwrap_or_default())
            .name(s.name.clone())
            .health(s.health.clone())
            .classify(s.profile.classify())
    }

    /// The stack over a balancer (the balance stage): the limits -> deadline -> breaker ->
    /// retry -> `balance` -> fault injection (over the whole balancer; over each endpoint
    /// with [`layer_endpoints`](Self::layer_endpoints)). The balancer joins this policy's
    /// hot reload, and the next reload gives it the policy's `balance` table; one built by
    /// [`balancer`](Self::balancer) before a reload that changed the table joins with the
    /// table in force.
    ///
    /// A latency fault drawn here (over the whole balancer) delays the balancer's pick past
    /// the retry stage's call: the retry after such an attempt does not know which endpoint
    /// it went to, and may go back to it. For a game day with retries,
    /// [`layer_endpoints`](Self::layer_endpoints) injects per endpoint and keeps them away.
    pub fn balanced<K, S, Req, C>(
        &self,
        balance: Balance<K, S, Req, C>,
    ) -> Reliability<Balance<K, S, Req, C>, P>
    where
        K: Send + Sync + 'static,
        S: Send + 'static,
    {
        self.stack_balancer(balance, Below::Balancer)
    }

    /// Registers `balance` for hot reload and stacks the stages over it.
    fn stack_balancer<K, S, Req, C>(
        &self,
        balance: Balance<K, S, Req, C>,
        below: Below,
    ) -> Reliability<Balance<K, S, Req, C>, P>
    where
        K: Send + Sync + 'static,
        S: Send + 'static,
    {
        let handle = balance.handle().clone();
        // Never between a reload's check and its apply: the new balancer was not checked.
        let _no_reload_now = self.stages.reload_lock();
        let mut stage = self.stages.balance_stage();
        // A reload may have landed since `balancer()` copied the balance table: a balancer
        // built from the table that reload replaced runs the one in force (as the reload
        // made the others). One built with a config of its own keeps it until a reload.
        if let (Some(config), Some(replaced)) = (&stage.config, &stage.replaced) {
            if handle.config() == *replaced && replaced != config {
                if let Err(error) = handle.reconfigure(config) {
                    tracing::warn!(policy = %self.stages.name, %error, "a balancer joining the policy keeps its own config: it refuses the policy's balance table");
                }
            }
        }
        stage.balancers.retain(|b| b.is_running());
        if stage
            .balancers
            .iter()
            .any(|b| b.name().as_deref() == Some(handle.name()))
        {
            tracing::warn!(policy = %self.stages.name, balancer = %handle.name(), "a second running balancer of this name joins the policy: their metrics share one series; name each with `BalanceBuilder::name`");
        }
        stage.balancers.push(Box::new(handle.downgrade()));
        drop(stage);
        Reliability::new(self.stages.stack(balance, below))
    }

    /// The stack over a new balancer of `endpoints` (keyed, e.g. by address), classifying
    /// with the profile's classifier; the fault stage wraps each endpoint, so an injected
    /// fault is one endpoint's failure for the balancer's outlier detection. Use
    /// [`balancer`](Self::balancer) and [`balanced`](Self::balanced) for more control.
    pub fn layer_endpoints<K, S, Req>(
        &self,
        endpoints: impl IntoIterator<Item = (K, S)>,
    ) -> Result<Balanced<K, S, Req, P>, tower_prism_balance::Error>
    where
        K: Eq + std::hash::Hash + fmt::Display + Clone + Send + Sync + 'static,
        S: Send + 'static,
    {
        let fault = &self.stages.fault;
        let balance = self
            .balancer()
            .name(self.free_balancer_name())
            .endpoints(
                endpoints
                    .into_iter()
                    .map(|(key, endpoint)| (key, fault.layer(endpoint))),
            )
            .build()?;
        Ok(self.stack_balancer(balance, Below::FaultedBalancer))
    }

    /// The policy's fault stage over `endpoint`, as [`layer_endpoints`](Self::layer_endpoints)
    /// puts it over each of its endpoints: for an endpoint added to that balancer later,
    /// through its handle (`service.get_ref().handle().add(key, layer.fault_endpoint(svc))`),
    /// so that the policy's faults reach it as they reach the others.
    pub fn fault_endpoint<S>(&self, endpoint: S) -> FaultService<S, P> {
        self.stages.fault.layer(endpoint)
    }
}

impl<P: Profile> ReliabilityLayer<P> {
    /// The policy's name, or `<name>-2`, `-3`... the first no running balancer of the policy
    /// has: the `name` label of a new balancer's metrics, apart from the others'.
    fn free_balancer_name(&self) -> String {
        let name = &self.stages.name;
        let taken: Vec<String> = (self.stages.balance_stage().balancers.iter())
            .filter_map(|b| b.name())
            .collect();
        std::iter::once(name.to_string())
            .chain((2..).map(|n| format!("{name}-{n}")))
            .find(|candidate| !taken.contains(candidate))
            .unwrap_or_else(|| name.to_string())
    }
}

impl<S, P: Profile> Layer<S> for ReliabilityLayer<P> {
    type Service = Reliability<S, P>;

    fn layer(&self, inner: S) -> Reliability<S, P> {
        Reliability::new(self.stages.stack(inner, Below::Service))
    }
}
