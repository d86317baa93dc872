//! Endpoints from a [`Discover`] stream: a task applies each change through the handle.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use tower::discover::{Change, Discover};
use tower_prism_core::BoxError;

use crate::config::BalanceConfig;
use crate::error::Error;
use crate::{Balance, BalanceHandle};

impl<K, S, Req> Balance<K, S, Req>
where
    K: Eq + Hash + fmt::Display + Clone + Send + Sync + 'static,
    S: Send + 'static,
{
    /// A balancer whose endpoints come from a [`Discover`] stream (a `ServiceList`, a DNS
    /// watcher...). A task on the current tokio runtime applies every change until the stream
    /// ends, fails, or the balancer and its handles are dropped.
    ///
    /// [`Discover`]: https://docs.rs/tower/latest/tower/discover/trait.Discover.html
    pub fn from_discover<D>(discover: D, config: BalanceConfig) -> Result<Self, Error>
    where
        D: Discover<Key = K, Service = S> + Send + 'static,
        D::Error: Into<BoxError>,
    {
        let balance = Self::new(config)?;
        spawn_discover(discover, balance.handle().clone())?;
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
