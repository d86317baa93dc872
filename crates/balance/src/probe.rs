//! The active health-check task: probes every endpoint each `health_check.interval` and
//! feeds the results to each endpoint's [`HealthCheck`](crate::health_check::HealthCheck).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use tower_prism_core::internal::lock;

use crate::config::BalanceConfig;
use crate::service::Directory;

/// The user's probe, boxed.
pub(crate) type Probe<K> =
    Arc<dyn Fn(&K) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Starts the task once the balancer's shared state exists.
pub(crate) type Starter<K> = Box<
    dyn FnOnce(
            Weak<Directory<K>>,
            Weak<Mutex<BalanceConfig>>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send,
>;

/// Runs the health checks until the balancer is dropped.
pub(crate) async fn health_checks<K: Clone + Send + Sync + 'static>(
    directory: Weak<Directory<K>>,
    config: Weak<Mutex<BalanceConfig>>,
    probe: Probe<K>,
) {
    let current = || {
        let config = config.upgrade()?;
        let config = lock(&config);
        Some(config.health_check.clone())
    };
    loop {
        let Some(config) = current() else { return };
        tokio::time::sleep(config.interval).await;
        let Some(config) = current() else { return };
        let Some(directory) = directory.upgrade() else {
            return;
        };
        let endpoints = lock(&directory).clone();
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
