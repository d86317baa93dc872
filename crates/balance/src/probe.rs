//! The active health-check task: probes every endpoint each `health_check.interval` and
//! feeds the results to each endpoint's [`HealthCheck`](crate::health_check::HealthCheck).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tower_prism_core::internal::lock;

use crate::config::{BalanceConfig, HealthCheckConfig};
use crate::endpoint::EndpointState;
use crate::service::Directory;

/// The user's probe, boxed.
pub(crate) type Probe<K> =
    Arc<dyn Fn(&K) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Starts the task once the balancer's shared state exists.
pub(crate) type Starter<K> = Box<
    dyn FnOnce(
            Weak<Directory<K>>,
            Weak<Mutex<BalanceConfig>>,
            Arc<Notify>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send,
>;

/// The background tasks working for one balancer (health checks, DNS discovery): aborted
/// when the balancer is dropped (as its last field), so that they end, and drop the
/// user's probe or resolver, at once instead of at the end of the interval they wait out.
/// An abort lands on an `await`: a round of changes is applied whole or not at all.
#[derive(Debug, Default)]
pub(crate) struct Tasks(Mutex<Vec<AbortHandle>>);

impl Tasks {
    pub(crate) fn add(&self, task: AbortHandle) {
        let mut tasks = lock(&self.0);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        let tasks = self
            .0
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for task in tasks.drain(..) {
            task.abort();
        }
    }
}

/// Runs the health checks until the balancer is dropped: a round at once, then every
/// interval. `wake` is notified when the config changes (a new interval does not wait out
/// the old one) and when endpoints join (they are probed at once: each waits out of
/// rotation for its first probe).
pub(crate) async fn health_checks<K: Clone + Send + Sync + 'static>(
    directory: Weak<Directory<K>>,
    config: Weak<Mutex<BalanceConfig>>,
    wake: Arc<Notify>,
    probe: Probe<K>,
) {
    let current = || {
        let config = config.upgrade()?;
        let config = lock(&config);
        Some(config.health_check.clone())
    };
    let endpoints = |only_pending: bool| {
        let directory = directory.upgrade()?;
        let all = lock(&directory);
        let pending = |(_, state): &&Endpoint<K>| !only_pending || state.health.is_pending();
        Some(all.iter().filter(pending).cloned().collect::<Vec<_>>())
    };
    // the interval counts from the end of the last round
    let mut last_round: Option<Instant> = None;
    loop {
        let config = loop {
            let Some(config) = current() else { return };
            let Some(last) = last_round else { break config };
            if tokio::time::timeout_at(last + config.interval, wake.notified())
                .await
                .is_err()
            {
                break config;
            }
            let Some(config) = current() else { return };
            let Some(joined) = endpoints(true) else {
                return;
            };
            if !joined.is_empty() {
                round(&joined, &config, &probe).await;
            }
        };
        let Some(all) = endpoints(false) else { return };
        round(&all, &config, &probe).await;
        last_round = Some(Instant::now());
    }
}

/// An endpoint as the health-check task sees it.
type Endpoint<K> = (K, Arc<EndpointState>);

/// One probe per endpoint, each in its own task (the call of the user's probe function
/// included), so a probe that panics (when called or when polled) fails that probe only,
/// and one that hangs fails at `timeout`: neither stops the checks. Each result is recorded
/// as it comes, so one slow probe holds back no other endpoint's verdict. Dropping the round
/// (the balancer went) aborts the probes.
async fn round<K: Clone + Send + Sync + 'static>(
    endpoints: &[Endpoint<K>],
    config: &HealthCheckConfig,
    probe: &Probe<K>,
) {
    let timeout = config.timeout;
    let mut probes = JoinSet::new();
    let mut index = HashMap::with_capacity(endpoints.len());
    for (i, (key, _)) in endpoints.iter().enumerate() {
        let (key, probe) = (key.clone(), probe.clone());
        let task = probes.spawn(async move { tokio::time::timeout(timeout, probe(&key)).await });
        index.insert(task.id(), i);
    }
    while let Some(done) = probes.join_next_with_id().await {
        let (id, passed) = match done {
            Ok((id, answer)) => (id, matches!(answer, Ok(true))),
            Err(failed) => (failed.id(), false),
        };
        if let Some(&i) = index.get(&id) {
            let state = &endpoints[i].1;
            state.record_probe(passed, config.healthy_threshold, config.unhealthy_threshold);
        }
    }
}
