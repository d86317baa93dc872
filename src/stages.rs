//! The running stages of one policy: what every service made from one
//! [`ReliabilityLayer`](crate::ReliabilityLayer) shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tower_layer::Layer;
use tower_prism_core::internal::lock;
use tower_prism_core::{ConfigError, HealthSignal};

use crate::components::{
    self as c, BalanceConfig, BreakerLayer, BreakerService, ConcurrencyLayer, ConcurrencyService,
    DeadlineLayer, DeadlineService, FaultLayer, FaultService, RateLimitLayer, RateLimitService,
    ReloadBalancer, RetryLayer,
};
use crate::config::PolicyConfig;
use crate::fallback::FallbackLayer;
use crate::names::check_policy_name;
use crate::profile::Profile;
use crate::retry_kind::RetryKind;
use crate::snapshot::Snapshot;
use crate::stack::{BreakerStage, Detached, DirectStack, FaultStage, LeanStack, Stack};

/// One policy's stages, each optional, and what they share.
pub(crate) struct Stages<P: Profile> {
    pub(crate) name: String,
    pub(crate) profile: P,
    pub(crate) health: HealthSignal,
    /// Not part of the stack: the layer [`ReliabilityLayer::fallback`] hands out.
    ///
    /// [`ReliabilityLayer::fallback`]: crate::ReliabilityLayer::fallback
    pub(crate) fallback: Option<FallbackLayer>,
    pub(crate) rate_limit: Option<RateLimitLayer<P>>,
    pub(crate) concurrency: Option<ConcurrencyLayer<P>>,
    pub(crate) deadline: Option<DeadlineLayer<P>>,
    pub(crate) breaker: Option<BreakerLayer<P>>,
    pub(crate) retry: Option<RetryLayer<P>>,
    /// Always built (switched off without a `fault` table), so a reload can add the table.
    pub(crate) fault: FaultLayer<P>,
    /// Whether the policy applied last has a `fault` table.
    pub(crate) fault_table: AtomicBool,
    /// The balance table and the balancers stacked with
    /// [`ReliabilityLayer::balanced`](crate::ReliabilityLayer::balanced).
    pub(crate) balance: Mutex<BalanceStage>,
    /// Held by a reload from its checks to its last change, so two reloads never
    /// interleave (each is checked against the state it is applied to).
    pub(crate) reload: Mutex<()>,
}

/// The policy's balance table (the last one applied) and its running balancers.
pub(crate) struct BalanceStage {
    /// `None`: the policy has no balance table (its balancers run the defaults).
    pub(crate) config: Option<BalanceConfig>,
    /// The table the last reload replaced: a balancer joining with it was built from the
    /// policy before that reload (see `ReliabilityLayer::balanced`).
    pub(crate) replaced: Option<BalanceConfig>,
    pub(crate) balancers: Vec<Box<dyn ReloadBalancer>>,
}

impl<P: Profile> Stages<P> {
    /// Validates `policy` and builds its stages. The error names the stage and field
    /// (`circuit_breaker.failure_rate_threshold`).
    pub(crate) fn new(
        name: String,
        health: HealthSignal,
        profile: P,
        policy: &PolicyConfig,
    ) -> Result<Self, ConfigError> {
        check_policy_name(&name)
            .map_err(|e| ConfigError::new("name", e.value(), e.reason().to_owned()))?;
        policy.validate()?;
        // A profile's stack without a retry stage (its `Retries`) refuses the table too,
        // whatever its `can_retry` says: there is nowhere to put it.
        let retries = profile.can_retry() && <P::Retries as RetryKind>::HAS_STAGE;
        if policy.retry.is_some() && !retries {
            return Err(ConfigError::new(
                "retry",
                "(a retry stage)",
                "this profile cannot replay requests (a server cannot resend what it received): \
                 remove the retry stage, or use a client profile such as `http()`",
            ));
        }
        let fallback = policy
            .fallback
            .as_ref()
            .map(|cfg| FallbackLayer::builder(cfg.clone()).name(&name).build())
            .transpose()
            .map_err(|e| e.in_section("fallback"))?;
        let rate_limit = policy
            .rate_limit
            .as_ref()
            .map(|cfg| c::rate_limit_layer(&name, cfg, &health, &profile))
            .transpose()
            .map_err(|e| e.in_section("rate_limit"))?;
        let concurrency = policy
            .concurrency_limit
            .as_ref()
            .map(|cfg| c::concurrency_layer(&name, cfg, &profile))
            .transpose()
            .map_err(|e| e.in_section("concurrency_limit"))?;
        // With a concurrency limit below it, the rate limit counts the requests sent on: a
        // request shed at once gives its tokens back. Without one there is nothing to
        // check (and the check would cost a copy of the stack's future per call).
        let rate_limit = rate_limit.map(|layer| layer.refund_shed(concurrency.is_some()));
        let deadline = policy
            .deadline
            .as_ref()
            .map(|cfg| c::deadline_layer(&name, cfg, &profile))
            .transpose()
            .map_err(|e| e.in_section("deadline"))?;
        let breaker = policy
            .circuit_breaker
            .as_ref()
            .map(|cfg| c::breaker_layer(&name, cfg, &health, &profile))
            .transpose()
            .map_err(|e| e.in_section("circuit_breaker"))?;
        let retry = policy
            .retry
            .as_ref()
            .map(|cfg| c::retry_layer(&name, cfg, &health, &profile))
            .transpose()
            .map_err(|e| e.in_section("retry"))?;
        let fault = c::fault_layer(&name, policy.fault.as_ref(), &profile)
            .map_err(|e| e.in_section("fault"))?;
        Ok(Stages {
            name,
            profile,
            health,
            fallback,
            rate_limit,
            concurrency,
            deadline,
            breaker,
            retry,
            fault,
            fault_table: AtomicBool::new(policy.fault.is_some()),
            balance: Mutex::new(BalanceStage {
                config: policy.balance.clone(),
                replaced: None,
                balancers: Vec::new(),
            }),
            reload: Mutex::new(()),
        })
    }

    pub(crate) fn balance_stage(&self) -> MutexGuard<'_, BalanceStage> {
        lock(&self.balance)
    }

    /// Serializes reloads of this policy (see [`Stages::reload`]).
    pub(crate) fn reload_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.reload)
    }

    /// A cheap view of the running stages.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            fallback: self.fallback.as_ref().map(|l| l.handle().snapshot()),
            rate_limit: self.rate_limit.as_ref().map(|l| l.handle().snapshot()),
            concurrency_limit: self.concurrency.as_ref().map(|l| l.handle().snapshot()),
            deadline: self.deadline.as_ref().map(|l| l.handle().snapshot()),
            circuit_breaker: self.breaker.as_ref().map(|l| l.handle().snapshot()),
            retry: self.retry.as_ref().map(|l| l.handle().snapshot()),
            fault: self
                .fault_table
                .load(Ordering::Relaxed)
                .then(|| self.fault.handle().snapshot()),
            circuit_open: self.health.is_circuit_open(),
            balancers: (self.balance_stage().balancers.iter())
                .filter(|b| b.is_running())
                .count(),
        }
    }

    /// Every stage over `inner`, in the fixed order, the ones the policy does not configure
    /// passing calls through; `over` says what `inner` is.
    pub(crate) fn stack<S>(&self, inner: S, over: Below) -> Stack<S, P> {
        if self.concurrency.is_none() && self.deadline.is_none() {
            // Neither stage can come later (a reload adds no stage table): the rate
            // limit goes right over the breaker.
            if P::Retries::HAS_STAGE {
                return Stack::Lean(self.lean_stack(inner, over));
            }
            return Stack::Direct(DirectStack::new(self.lean_stack(Detached, over), inner));
        }
        let breaker = self.breaker_stage(inner, over);
        let deadline = match &self.deadline {
            Some(layer) => layer.layer(breaker),
            None => DeadlineService::<_, P>::pass_through(breaker),
        };
        let concurrency = match &self.concurrency {
            Some(layer) => layer.layer(deadline),
            None => ConcurrencyService::<_, P>::pass_through(deadline),
        };
        Stack::Full(match &self.rate_limit {
            Some(layer) => layer.layer(concurrency),
            None => RateLimitService::<_, P>::pass_through_as(concurrency),
        })
    }

    /// The rate limit right over the breaker stage.
    fn lean_stack<S>(&self, inner: S, over: Below) -> LeanStack<S, P> {
        let breaker = self.breaker_stage(inner, over);
        match &self.rate_limit {
            Some(layer) => layer.layer(breaker),
            None => RateLimitService::<_, P>::pass_through_as(breaker),
        }
    }

    /// The breaker over the retry stage over the fault stage over `inner`.
    fn breaker_stage<S>(&self, inner: S, over: Below) -> BreakerStage<S, P> {
        let fault: FaultStage<S, P> = match over {
            Below::Service | Below::Balancer => self.fault.layer(inner),
            Below::FaultedBalancer => FaultService::<S, P>::pass_through(inner),
        };
        let mut retry =
            P::Retries::stage::<_, P>(self.retry.as_ref(), self.deadline.as_ref(), fault);
        if over != Below::Service {
            // a retry goes to an endpoint its call has not tried, as a hedge does
            retry = P::Retries::avoid_tried_endpoints::<_, P>(retry);
        }
        match &self.breaker {
            Some(layer) => layer.layer(retry),
            None => BreakerService::<_, P>::pass_through(retry),
        }
    }
}

/// What a policy's stack goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Below {
    /// Any service: the fault stage runs over it.
    Service,
    /// A balancer: the fault stage runs over it, and retries avoid the endpoints their
    /// call tried.
    Balancer,
    /// A balancer whose endpoints the fault stage already wraps each: retries avoid the
    /// endpoints their call tried.
    FaultedBalancer,
}
