//! Building a balancer.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use tower::discover::{Change, Discover};
use tower::BoxError;
use tower_prism_core::{DefaultClassifier, HealthSignal};

use crate::config::{BalanceConfig, Strategy};
use crate::endpoint::Policy;
use crate::error::Error;
use crate::service::{Directory, KeyFn, Registry, Shared};
use crate::{Balance, BalanceHandle};

type Probe<K> = Arc<dyn Fn(&K) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;
type Starter<K> = Box<
    dyn FnOnce(
            Weak<Directory<K>>,
            Weak<Mutex<BalanceConfig>>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send,
>;

/// Builds a [`Balance`]; start with [`Balance::builder`].
pub struct BalanceBuilder<K, S, Req, C = DefaultClassifier> {
    config: BalanceConfig,
    name: String,
    classify: C,
    key_fn: Option<KeyFn<Req>>,
    signal: Option<HealthSignal>,
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
    /// A builder with the default config (P2C peak-EWMA, outlier ejection on) and no endpoints.
    pub fn builder() -> BalanceBuilder<K, S, Req> {
        BalanceBuilder {
            config: BalanceConfig::default(),
            name: "default".to_owned(),
            classify: DefaultClassifier,
            key_fn: None,
            signal: None,
            probe: None,
            endpoints: Vec::new(),
        }
    }
}

impl<K, S, Req> Balance<K, S, Req>
where
    K: Eq + Hash + fmt::Display + Clone,
{
    /// An empty balancer with this config; add endpoints through [`Balance::handle`].
    pub fn new(config: BalanceConfig) -> Result<Self, Error> {
        Self::builder().config(config).build()
    }
}

impl<K, S, Req> Balance<K, S, Req>
where
    K: Eq + Hash + fmt::Display + Clone + Send + Sync + 'static,
    S: Send + 'static,
{
    /// A balancer whose endpoints come from a [`Discover`] stream (a `ServiceList`, a DNS
    /// watcher...). A task on the current tokio runtime applies every change until the stream
    /// ends, fails, or the balancer and its handles are dropped.
    pub fn from_discover<D>(discover: D, config: BalanceConfig) -> Result<Self, Error>
    where
        D: Discover<Key = K, Service = S> + Send + 'static,
        D::Error: Into<BoxError>,
    {
        let balance = Self::new(config)?;
        spawn_discover(discover, balance.handle())?;
        Ok(balance)
    }
}

/// Spawns a task applying a [`Discover`] stream's changes to a balancer.
fn spawn_discover<D, K, S>(discover: D, handle: BalanceHandle<K, S>) -> Result<(), Error>
where
    D: Discover<Key = K, Service = S> + Send + 'static,
    D::Error: Into<BoxError>,
    K: Eq + Hash + fmt::Display + Clone + Send + Sync + 'static,
    S: Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| Error::NoRuntime { task: "discovery" })?;
    let weak = Arc::downgrade(&handle.shared);
    drop(handle);
    runtime.spawn(async move {
        let mut discover = Box::pin(discover);
        loop {
            let change = std::future::poll_fn(|cx| discover.as_mut().poll_discover(cx)).await;
            let Some(shared) = weak.upgrade() else { return };
            let handle = BalanceHandle { shared };
            match change {
                Some(Ok(Change::Insert(key, service))) => {
                    if let Err(e) = handle.add(key, service) {
                        tracing::warn!(balancer = %handle.shared.policy.name, error = %e, "discovered endpoint refused");
                    }
                }
                Some(Ok(Change::Remove(key))) => {
                    handle.remove(&key);
                }
                Some(Err(e)) => {
                    let e: BoxError = e.into();
                    tracing::warn!(balancer = %handle.shared.policy.name, error = %e, "discovery failed; endpoint set frozen");
                    return;
                }
                None => return,
            }
        }
    });
    Ok(())
}

impl<K, S, Req, C> BalanceBuilder<K, S, Req, C> {
    /// Uses this config (replacing the whole config set so far).
    pub fn config(mut self, config: BalanceConfig) -> Self {
        self.config = config;
        self
    }

    /// Chooses endpoints with this strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.config.strategy = strategy;
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
            signal: self.signal,
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

    /// Publishes every call's outcome and latency to this health signal.
    pub fn health_signal(mut self, signal: HealthSignal) -> Self {
        self.signal = Some(signal);
        self
    }

    /// Runs active health checks: every `health_check.interval`, `probe(key)` for each
    /// endpoint; `true` within `health_check.timeout` passes. A probe that returns `false`,
    /// hangs past the timeout or panics (when called or when polled) fails, and the checks
    /// go on.
    pub fn health_check<F, Fut>(mut self, probe: F) -> Self
    where
        F: Fn(&K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
        K: Clone + Send + Sync + 'static,
    {
        let probe: Probe<K> = Arc::new(move |key: &K| Box::pin(probe(key)) as Pin<Box<_>>);
        self.probe = Some(Box::new(move |directory, config| {
            Box::pin(health_checks(directory, config, probe))
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
        let policy = Arc::new(Policy::new(self.name.into(), &self.config, self.signal));
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
        });
        let balance = Balance::from_shared(shared, self.classify, self.key_fn);
        let handle = balance.handle();
        for (key, service, weight) in self.endpoints {
            handle.add_weighted(key, service, weight)?;
        }
        if let Some(start) = self.probe {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
                task: "health checks",
            })?;
            runtime.spawn(start(
                Arc::downgrade(&handle.shared.directory),
                Arc::downgrade(&handle.shared.config),
            ));
        }
        handle.shared.policy.update_gauges();
        Ok(balance)
    }
}

async fn health_checks<K: Clone + Send + Sync + 'static>(
    directory: Weak<Directory<K>>,
    config: Weak<Mutex<BalanceConfig>>,
    probe: Probe<K>,
) {
    let current = || {
        let config = config.upgrade()?;
        let config = config.lock().unwrap_or_else(|e| e.into_inner());
        Some(config.health_check.clone())
    };
    loop {
        let Some(config) = current() else { return };
        tokio::time::sleep(config.interval).await;
        let Some(config) = current() else { return };
        let Some(directory) = directory.upgrade() else {
            return;
        };
        let endpoints = directory.lock().unwrap_or_else(|e| e.into_inner()).clone();
        drop(directory);
        let timeout = config.timeout;
        // each probe runs in its own task, the call of the user's probe function included, so
        // a probe that panics (when called or when polled) fails that probe only, and one
        // that hangs fails at `timeout`: neither stops the checks
        let probes: Vec<_> = endpoints
            .iter()
            .map(|(key, _)| {
                let (key, probe) = (key.clone(), probe.clone());
                tokio::spawn(async move { tokio::time::timeout(timeout, probe(&key)).await })
            })
            .collect();
        for ((_, state), probe) in endpoints.iter().zip(probes) {
            let passed = matches!(probe.await, Ok(Ok(true)));
            state.record_probe(passed, config.healthy_threshold, config.unhealthy_threshold);
        }
    }
}
