//! Hot reload of one policy's running stages: check everything, then apply.

use tower_prism_core::ConfigError;

use crate::components as c;
use crate::config::PolicyConfig;
use crate::config_error::ConfigFileError;
use crate::names::{bounded_name, policy_section};
use crate::profile::Profile;
use crate::stages::Stages;

impl<P: Profile> Stages<P> {
    /// Checks and applies `policy`, all or nothing (see
    /// [`ReliabilityLayer::reconfigure`](crate::ReliabilityLayer::reconfigure)).
    pub(crate) fn reconfigure(&self, policy: &PolicyConfig) -> Result<(), ConfigFileError> {
        let _one_at_a_time = self.reload_lock();
        self.check(policy)?;
        self.apply(policy);
        Ok(())
    }

    /// Everything [`apply`](Self::apply) could refuse, checked without changing anything:
    /// the values, the shape, the clocks, the breaker window, the retry budget's window,
    /// the deadline header, rate-limit headers or a status fault the profile cannot
    /// write, and each running balancer's own check (e.g. `consistent_hash` needs a key
    /// function).
    pub(crate) fn check(&self, policy: &PolicyConfig) -> Result<(), ConfigFileError> {
        let name = &self.name;
        policy
            .validate()
            .map_err(|e| ConfigFileError::Invalid(e.in_section(&policy_section(name))))?;
        self.check_shape(policy)?;
        let invalid = |section: &str, error: ConfigError| {
            ConfigFileError::Invalid(error.in_section(section).in_section(&policy_section(name)))
        };
        // A running limiter or breaker keeps its clock (the times it stores are on it), a
        // running breaker its window (its slots are allocated once) and a retry stage its
        // budget's window (the width of its slots): each stage's own check says so.
        if let (Some(layer), Some(config)) = (&self.rate_limit, &policy.rate_limit) {
            c::check_rate_limit::<P>(config).map_err(|e| invalid("rate_limit", e))?;
            // The clock and the key (built into every service) cannot change.
            layer
                .handle()
                .check(config)
                .map_err(|e| invalid("rate_limit", e))?;
        }
        if let (Some(layer), Some(config)) = (&self.deadline, &policy.deadline) {
            c::check_deadline::<P>(config).map_err(|e| invalid("deadline", e))?;
            layer
                .handle()
                .check(config)
                .map_err(|e| invalid("deadline", e))?;
        }
        if let (Some(layer), Some(config)) = (&self.breaker, &policy.circuit_breaker) {
            c::check_breaker(layer, config).map_err(|e| invalid("circuit_breaker", e))?;
        }
        if let (Some(layer), Some(config)) = (&self.retry, &policy.retry) {
            layer
                .handle()
                .check(config)
                .map_err(|e| invalid("retry", e))?;
        }
        if let Some(config) = &policy.fault {
            self.fault
                .handle()
                .check(config)
                .map_err(|e| invalid("fault", e))?;
        }
        if let Some(config) = &policy.balance {
            for balancer in &self.balance_stage().balancers {
                balancer.check(config).map_err(|e| invalid("balance", e))?;
            }
        }
        Ok(())
    }

    /// Applies a policy that [`check`](Self::check) accepted, stage by stage.
    pub(crate) fn apply(&self, policy: &PolicyConfig) {
        let name = &self.name;
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
        if let (Some(layer), Some(config)) = (&self.fallback, &policy.fallback) {
            report("fallback", layer.handle().reconfigure(config));
        }
        if let (Some(layer), Some(config)) = (&self.rate_limit, &policy.rate_limit) {
            report("rate_limit", c::reconfigure_rate_limit(layer, config));
        }
        if let (Some(layer), Some(config)) = (&self.concurrency, &policy.concurrency_limit) {
            report(
                "concurrency_limit",
                c::reconfigure_concurrency(layer, config),
            );
        }
        if let (Some(layer), Some(config)) = (&self.deadline, &policy.deadline) {
            report("deadline", layer.handle().reconfigure(config));
        }
        if let (Some(layer), Some(config)) = (&self.breaker, &policy.circuit_breaker) {
            report("circuit_breaker", c::reconfigure_breaker(layer, config));
        }
        if let (Some(layer), Some(config)) = (&self.retry, &policy.retry) {
            report(
                "retry",
                c::reconfigure_retry(name, layer, config, &self.profile),
            );
        }
        let mut balance = self.balance_stage();
        if let Some(config) = &policy.balance {
            for balancer in &balance.balancers {
                report("balance", balancer.apply(config));
            }
            balance.replaced = balance.config.replace(config.clone());
        }
        drop(balance);
        // The one table a reload may add or remove: without it the stage is switched off.
        let fault = policy.fault.clone().unwrap_or_else(c::fault_off);
        report("fault", self.fault.handle().reconfigure(&fault));
        self.fault_table
            .store(policy.fault.is_some(), std::sync::atomic::Ordering::Relaxed);
        tracing::info!(policy = %name, "reliability policy reconfigured");
    }

    /// Refuses a policy that adds or removes a stage table of this running stack (`fault`
    /// aside: its stage is always there).
    fn check_shape(&self, policy: &PolicyConfig) -> Result<(), ConfigFileError> {
        let shape = |stage, running: bool, wanted: bool| {
            if running == wanted {
                Ok(())
            } else {
                Err(ConfigFileError::ShapeChanged {
                    policy: bounded_name(&self.name),
                    stage,
                    change: if wanted { "add" } else { "remove" },
                })
            }
        };
        shape(
            "fallback",
            self.fallback.is_some(),
            policy.fallback.is_some(),
        )?;
        shape(
            "rate_limit",
            self.rate_limit.is_some(),
            policy.rate_limit.is_some(),
        )?;
        shape(
            "concurrency_limit",
            self.concurrency.is_some(),
            policy.concurrency_limit.is_some(),
        )?;
        shape(
            "deadline",
            self.deadline.is_some(),
            policy.deadline.is_some(),
        )?;
        shape(
            "circuit_breaker",
            self.breaker.is_some(),
            policy.circuit_breaker.is_some(),
        )?;
        shape("retry", self.retry.is_some(), policy.retry.is_some())?;
        shape(
            "balance",
            self.balance_stage().config.is_some(),
            policy.balance.is_some(),
        )
    }
}
