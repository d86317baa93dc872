//! Building a balancer.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tower_prism_core::{DefaultClassifier, HealthSignal};

use crate::config::{BalanceConfig, Strategy};
use crate::endpoint::Policy;
use crate::error::Error;
use crate::handle::MAX_ENDPOINTS;
use crate::probe::{Probe, Starter};
use crate::service::{KeyFn, Registry, Shared};
use crate::Balance;

/// Builds a [`Balance`]; start with [`Balance::builder`].
pub struct BalanceBuilder<K, S, Req, C = DefaultClassifier> {
    config: BalanceConfig,
    name: String,
    classify: C,
    key_fn: Option<KeyFn<Req>>,
    health: Option<HealthSignal>,
    probe: Option<Starter<K>>,
    endpoints: Vec<(K, S, u32)>,
}

impl<K, S, Req, C> fmt::Debug for BalanceBuilder<K, S, Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("endpoints", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

impl<K, S, Req> Balance<K, S, Req> {
    /// A builder, for what a config file cannot say: the [`name`](BalanceBuilder::name),
    /// a [`classify`](BalanceBuilder::classify)er, a shared [`health`](BalanceBuilder::health)
    /// signal, a consistent-hashing [`key_fn`](BalanceBuilder::key_fn), a health
    /// [probe](BalanceBuilder::health_check) and the first endpoints. It starts from the
    /// default config (P2C peak-EWMA, outlier ejection on); set another with
    /// [`config`](BalanceBuilder::config). Without any of these, [`Balance::new`] is the
    /// plain way.
    pub fn builder() -> BalanceBuilder<K, S, Req> {
        BalanceBuilder {
            config: BalanceConfig::default(),
            name: "default".to_owned(),
            classify: DefaultClassifier,
            key_fn: None,
            health: None,
            probe: None,
            endpoints: Vec::new(),
        }
    }
}

impl<K, S, Req> Balance<K, S, Req>
where
    K: Eq + Hash + fmt::Display + Clone,
{
    /// The plain way: an empty balancer named `"default"` running `config`; add endpoints
    /// through its [`handle`](Balance::handle). Use [`Balance::builder`] for a name, a
    /// classifier, a health signal, a key function, health probes or endpoints given up front.
    pub fn new(config: BalanceConfig) -> Result<Self, Error> {
        Self::builder().config(config).build()
    }
}

impl<K, S, Req, C> BalanceBuilder<K, S, Req, C> {
    /// Runs this config (from a file, or [`BalanceConfig::builder`]) instead of the default.
    pub fn config(mut self, config: BalanceConfig) -> Self {
        self.config = config;
        self
    }

    /// The policy name, the `name` label of every metric and the `balancer` field of events.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Decides which results count as failures for outlier ejection and metrics (default:
    /// `Err` is a failure). Any [`Classify`](tower_prism_core::Classify), closures included.
    pub fn classify<C2>(self, classify: C2) -> BalanceBuilder<K, S, Req, C2> {
        BalanceBuilder {
            config: self.config,
            name: self.name,
            classify,
            key_fn: self.key_fn,
            health: self.health,
            probe: self.probe,
            endpoints: self.endpoints,
        }
    }

    /// The request key for [`Strategy::ConsistentHash`]; hash anything with
    /// [`hash_key`](crate::hash_key).
    pub fn key_fn(mut self, key_fn: impl Fn(&Req) -> u64 + Send + Sync + 'static) -> Self {
        self.key_fn = Some(Arc::new(key_fn));
        self
    }

    /// Publishes every call's outcome and latency to this shared health signal.
    pub fn health(mut self, health: HealthSignal) -> Self {
        self.health = Some(health);
        self
    }

    /// Runs active health checks: at once, then every `health_check.interval`, `probe(key)`
    /// for each endpoint; `true` within `health_check.timeout` passes. A probe that returns
    /// `false`, hangs past the timeout or panics (when called or when polled) fails, and the
    /// checks go on. Each endpoint waits out of rotation for its first probe, and gets no
    /// call until it passes, panic mode or not; a call made while no endpoint is in
    /// rotation and some await their first probe waits for the verdicts.
    pub fn health_check<F, Fut>(mut self, probe: F) -> Self
    where
        F: Fn(&K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
        K: Clone + Send + Sync + 'static,
    {
        let probe: Probe<K> = Arc::new(move |key: &K| Box::pin(probe(key)) as Pin<Box<_>>);
        self.probe = Some(Box::new(move |directory, config, wake| {
            Box::pin(crate::probe::health_checks(directory, config, wake, probe))
        }));
        self
    }

    /// Adds an endpoint with weight 1.
    pub fn endpoint(mut self, key: K, service: S) -> Self {
        self.endpoints.push((key, service, 1));
        self
    }

    /// Adds an endpoint with a weight (at least 1) for weighted round robin.
    pub fn weighted_endpoint(mut self, key: K, service: S, weight: u32) -> Self {
        self.endpoints.push((key, service, weight));
        self
    }

    /// Adds endpoints with weight 1.
    pub fn endpoints(mut self, endpoints: impl IntoIterator<Item = (K, S)>) -> Self {
        self.endpoints
            .extend(endpoints.into_iter().map(|(k, s)| (k, s, 1)));
        self
    }

    /// Sets the weights of endpoints already given, by key.
    pub fn weights(mut self, weights: impl IntoIterator<Item = (K, u32)>) -> Self
    where
        K: PartialEq,
    {
        for (key, weight) in weights {
            for e in self.endpoints.iter_mut().filter(|e| e.0 == key) {
                e.2 = weight;
            }
        }
        self
    }
}

impl<K, S, Req, C> BalanceBuilder<K, S, Req, C>
where
    K: Eq + Hash + fmt::Display + Clone,
{
    /// Validates the config and builds the balancer. Health checks need a tokio runtime.
    pub fn build(self) -> Result<Balance<K, S, Req, C>, Error> {
        self.config.validate()?;
        if self.config.strategy == Strategy::ConsistentHash && self.key_fn.is_none() {
            return Err(tower_prism_core::ConfigError::new(
                "strategy",
                "consistent_hash",
                "needs a key_fn on the balancer builder",
            )
            .into());
        }
        for (_, _, w) in &self.endpoints {
            crate::config::check_weight(*w)?;
        }
        let probed = self.probe.is_some();
        let policy = Arc::new(Policy::new(
            self.name.into(),
            &self.config,
            self.health,
            probed,
        ));
        let shared = Arc::new(Shared {
            policy,
            epoch: AtomicU64::new(0),
            registry: Mutex::new(Registry {
                entries: Vec::new(),
                topology: Arc::default(),
                slots: Default::default(),
            }),
            config: Arc::new(Mutex::new(self.config)),
            directory: Arc::default(),
            has_key_fn: self.key_fn.is_some(),
            health_wake: Arc::default(),
            tasks: Default::default(),
        });
        let balance = Balance::from_shared(shared, self.classify, self.key_fn);
        let handle = balance.handle();
        let given = self.endpoints.len();
        if !handle.change(&[], self.endpoints).refused.is_empty() {
            return Err(tower_prism_core::ConfigError::new(
                "endpoints",
                given,
                format!("a balancer holds at most {MAX_ENDPOINTS} endpoints"),
            )
            .into());
        }
        if let Some(start) = self.probe {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
                task: "health checks",
            })?;
            let task = runtime.spawn(start(
                Arc::downgrade(&handle.shared.directory),
                Arc::downgrade(&handle.shared.config),
                handle.shared.health_wake.clone(),
            ));
            handle.shared.tasks.add(task.abort_handle());
        }
        handle.shared.policy.update_gauges();
        Ok(balance)
    }
}
