//! Changing and inspecting a running balancer.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tower_prism_core::internal::lock;
use tower_prism_core::ConfigError;

use crate::config::{BalanceConfig, Strategy};
use crate::endpoint::EndpointState;
use crate::service::{Entry, Shared};
use crate::snapshot::{BalanceSnapshot, EndpointSnapshot};

/// The most endpoints one balancer holds. Adding one more is refused with a
/// [`ConfigError`] (field `endpoints`), so no endpoint list or discovery stream can grow the
/// balancer's state, or its metric series, without bound.
pub const MAX_ENDPOINTS: usize = 10_000;

/// The most characters of an endpoint's key (as text) kept for tracing events; a longer key
/// is cut to a prefix and its length. Snapshots carry the key itself.
pub const MAX_LABEL_CHARS: usize = 128;

/// Adds, removes, inspects and reconfigures the endpoints of a [`Balance`](crate::Balance)
/// and every clone of it. Cloneable; changes take effect on each clone's next `poll_ready`.
pub struct BalanceHandle<K, S> {
    pub(crate) shared: Arc<Shared<K, S>>,
}

impl<K, S> Clone for BalanceHandle<K, S> {
    fn clone(&self) -> Self {
        BalanceHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<K, S> fmt::Debug for BalanceHandle<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceHandle")
            .field("name", &self.shared.policy.name)
            .finish_non_exhaustive()
    }
}

impl<K, S> BalanceHandle<K, S> {
    /// A handle that does not keep the balancer alive: once every clone of the balancer
    /// and every strong handle is dropped, its endpoints and background tasks go, and
    /// [`WeakBalanceHandle::upgrade`] returns `None`. For a registry of running balancers
    /// (a policy's, to reload them) that must not outlive them.
    pub fn downgrade(&self) -> WeakBalanceHandle<K, S> {
        WeakBalanceHandle {
            shared: Arc::downgrade(&self.shared),
        }
    }
}

/// A [`BalanceHandle`] that does not keep its balancer alive (see
/// [`BalanceHandle::downgrade`]).
pub struct WeakBalanceHandle<K, S> {
    shared: Weak<Shared<K, S>>,
}

impl<K, S> WeakBalanceHandle<K, S> {
    /// The handle, while the balancer is still running.
    pub fn upgrade(&self) -> Option<BalanceHandle<K, S>> {
        self.shared.upgrade().map(|shared| BalanceHandle { shared })
    }
}

impl<K, S> Clone for WeakBalanceHandle<K, S> {
    fn clone(&self) -> Self {
        WeakBalanceHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<K, S> fmt::Debug for WeakBalanceHandle<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakBalanceHandle")
            .field("running", &(self.shared.strong_count() > 0))
            .finish_non_exhaustive()
    }
}

impl<K, S> BalanceHandle<K, S>
where
    K: Eq + Hash + fmt::Display + Clone,
{
    /// Adds an endpoint with weight 1 (replacing any endpoint with the same key). Refused
    /// beyond [`MAX_ENDPOINTS`].
    pub fn add(&self, key: K, service: S) -> Result<(), ConfigError> {
        self.insert(key, service, 1)
    }

    /// Adds an endpoint with a weight for weighted round robin (replacing any endpoint with the
    /// same key). A weight of 0, or more than [`MAX_ENDPOINTS`] endpoints, is a typed error.
    pub fn add_weighted(&self, key: K, service: S, weight: u32) -> Result<(), ConfigError> {
        crate::config::check_weight(weight)?;
        self.insert(key, service, weight)
    }

    fn insert(&self, key: K, service: S, weight: u32) -> Result<(), ConfigError> {
        let changed = self.change(&[], vec![(key, service, weight)]);
        if changed.refused.is_empty() {
            return Ok(());
        }
        Err(ConfigError::new(
            "endpoints",
            MAX_ENDPOINTS + 1,
            format!("a balancer holds at most {MAX_ENDPOINTS} endpoints"),
        ))
    }

    /// Removes an endpoint; `false` if there was none with this key. Requests in flight to it
    /// complete.
    pub fn remove(&self, key: &K) -> bool {
        self.change(std::slice::from_ref(key), Vec::new()).removed > 0
    }

    /// Removes the endpoints `remove` names, then adds `add` (each replacing any endpoint
    /// with the same key), under one lock and with one rebuild of what the clones copy. No
    /// clone sees the set between the two halves (so replacing every endpoint never empties
    /// the balancer), and a batch of n changes costs one pass over the set, not n. New keys
    /// beyond [`MAX_ENDPOINTS`] are refused and counted, in the order given.
    pub(crate) fn change(&self, remove: &[K], add: Vec<(K, S, u32)>) -> Changed<K> {
        let policy = &self.shared.policy;
        let mut left = Vec::new();
        let mut joined = Vec::new();
        let mut refused = Vec::new();
        let mut removed = 0;
        {
            let mut guard = self.shared.registry();
            let registry = &mut *guard;
            if let [key] = remove {
                // one key (`remove`): find it, no set of keys to build
                if let Some(pos) = registry.entries.iter().position(|e| e.key == *key) {
                    let entry = registry.entries.remove(pos);
                    entry.state.remove();
                    registry.slots.give_back(entry.state.slot);
                    removed += 1;
                    left.push(entry);
                }
            } else if !remove.is_empty() {
                let gone: HashSet<&K> = remove.iter().collect();
                for entry in std::mem::take(&mut registry.entries) {
                    if gone.contains(&entry.key) {
                        entry.state.remove();
                        registry.slots.give_back(entry.state.slot);
                        removed += 1;
                        left.push(entry);
                    } else {
                        registry.entries.push(entry);
                    }
                }
            }
            // a batch looks its keys up in an index; one key (`add`) is found by a scan
            let mut index: HashMap<K, usize> = if add.len() > 1 {
                let keys = registry.entries.iter().enumerate();
                keys.map(|(i, e)| (e.key.clone(), i)).collect()
            } else {
                HashMap::new()
            };
            let batch = add.len() > 1;
            for (key, service, weight) in add {
                let existing = if batch {
                    index.get(&key).copied()
                } else {
                    registry.entries.iter().position(|e| e.key == key)
                };
                if existing.is_none() && registry.entries.len() >= MAX_ENDPOINTS {
                    refused.push(key);
                    continue;
                }
                let text = key.to_string();
                let id_hash = crate::hash::hash_key(&text);
                let label = tower_prism_core::config::quote_bounded(&text, MAX_LABEL_CHARS);
                if let Some(pos) = existing {
                    let old = &registry.entries[pos].state;
                    old.remove();
                    registry.slots.give_back(old.slot);
                }
                let slot = registry.slots.take();
                let state = Arc::new(EndpointState::new(
                    label,
                    id_hash,
                    weight,
                    slot,
                    policy.clone(),
                ));
                joined.push(state.clone());
                let entry = Entry {
                    key,
                    state,
                    service,
                };
                match existing {
                    Some(pos) => left.push(std::mem::replace(&mut registry.entries[pos], entry)),
                    None => {
                        if batch {
                            index.insert(entry.key.clone(), registry.entries.len());
                        }
                        registry.entries.push(entry);
                    }
                }
            }
            if !left.is_empty() || !joined.is_empty() {
                policy
                    .endpoints
                    .store(registry.entries.len(), Ordering::Relaxed);
                registry.rebuild(&self.shared.directory);
                self.shared.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
        for gone in &left {
            let (slot, label) = (gone.state.slot, &gone.state.label);
            tracing::info!(balancer = %policy.name, slot, endpoint = %label, "endpoint removed: slot {slot} was {label}");
        }
        for state in &joined {
            let (slot, label) = (state.slot, &state.label);
            let weight = state.weight.load(Ordering::Relaxed);
            tracing::info!(balancer = %policy.name, slot, endpoint = %label, weight, "endpoint added: slot {slot} = {label}");
        }
        for state in &joined {
            // out of rotation until its first probe, with health checks on
            state.reassess();
        }
        if !left.is_empty() || !joined.is_empty() {
            policy.update_gauges();
            policy.wake_all();
        }
        if policy.probed && !joined.is_empty() {
            // the health-check task probes the new endpoints now, not at its next round
            self.shared.health_wake.notify_one();
        }
        Changed { removed, refused }
    }

    /// Changes an endpoint's weight; `Ok(false)` if there is no such endpoint.
    pub fn set_weight(&self, key: &K, weight: u32) -> Result<bool, ConfigError> {
        crate::config::check_weight(weight)?;
        let mut registry = self.shared.registry();
        let Some(entry) = registry.entries.iter().find(|e| e.key == *key) else {
            return Ok(false);
        };
        entry.state.weight.store(weight, Ordering::Relaxed);
        registry.rebuild(&self.shared.directory);
        self.shared.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// The keys of the endpoints, in the order they were added (an endpoint replaced by one
    /// with the same key keeps its place).
    pub fn keys(&self) -> Vec<K> {
        self.shared
            .registry()
            .entries
            .iter()
            .map(|e| e.key.clone())
            .collect()
    }

    /// The state of every endpoint.
    pub fn snapshot(&self) -> BalanceSnapshot<K> {
        let registry = self.shared.registry();
        let r = Ordering::Relaxed;
        let endpoints = registry
            .entries
            .iter()
            .map(|e| {
                let s = &e.state;
                let ejected = s.outlier.ejected_until().is_some();
                EndpointSnapshot {
                    key: e.key.clone(),
                    slot: s.slot,
                    weight: s.weight.load(r),
                    healthy: s.available(),
                    ejected: ejected && !s.available(),
                    passing_health_checks: s.health.is_healthy(),
                    in_flight: s.calls.in_flight(),
                    requests: s.requests.load(r),
                    failures: s.failures.load(r),
                    ejections: s.outlier.ejections(),
                    latency_ewma: Duration::from_nanos(s.ewma.raw() as u64),
                }
            })
            .collect();
        BalanceSnapshot {
            strategy: self.shared.policy.strategy(),
            endpoints,
        }
    }
}

/// What one [`BalanceHandle::change`] did.
pub(crate) struct Changed<K> {
    /// Endpoints that `remove` named and the balancer held.
    pub(crate) removed: usize,
    /// The new keys refused at [`MAX_ENDPOINTS`], in the order given.
    pub(crate) refused: Vec<K>,
}

impl<K, S> BalanceHandle<K, S> {
    /// The balancer's name: the `name` label of its metrics and the `balancer` field of its
    /// events (set with [`BalanceBuilder::name`](crate::BalanceBuilder::name)).
    pub fn name(&self) -> &str {
        &self.shared.policy.name
    }

    /// Checks, without applying anything, whether [`reconfigure`](Self::reconfigure) would
    /// accept `config` on this running balancer: the config is valid and the balancer can run
    /// it (`consistent_hash` needs a `key_fn` given to the builder). A reload that spans
    /// several stages calls this on each before it changes any.
    pub fn check(&self, config: &BalanceConfig) -> Result<(), ConfigError> {
        config.validate()?;
        if config.strategy == Strategy::ConsistentHash && !self.shared.has_key_fn {
            return Err(ConfigError::new(
                "strategy",
                "consistent_hash",
                "needs a key_fn on the balancer builder",
            ));
        }
        Ok(())
    }

    /// Applies a new config to the running balancer (hot reload): strategy, latency estimate,
    /// ejection rules and health-check timing. Endpoints, their statistics and current
    /// ejections stay. A config that [`check`](Self::check) refuses is rejected and changes
    /// nothing.
    pub fn reconfigure(&self, config: &BalanceConfig) -> Result<(), ConfigError> {
        self.check(config)?;
        let schedule_needed = config.strategy == Strategy::WeightedRoundRobin
            && self.shared.policy.strategy() != Strategy::WeightedRoundRobin;
        self.shared.policy.apply(config);
        if schedule_needed {
            // only a weighted round robin's registry holds its schedule (see `rebuild`)
            self.shared.registry().rebuild_topology();
            self.shared.epoch.fetch_add(1, Ordering::AcqRel);
        }
        *lock(&self.shared.config) = config.clone();
        // the health-check task re-reads its interval now
        self.shared.health_wake.notify_one();
        tracing::info!(balancer = %self.shared.policy.name, strategy = ?config.strategy, "balancer reconfigured");
        Ok(())
    }

    /// The config in effect.
    pub fn config(&self) -> BalanceConfig {
        lock(&self.shared.config).clone()
    }

    /// How many endpoints the balancer knows.
    pub fn len(&self) -> usize {
        self.shared.policy.endpoints.load(Ordering::Relaxed)
    }

    /// Whether the balancer has no endpoints.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
