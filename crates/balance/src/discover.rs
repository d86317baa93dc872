//! Endpoints from a [`Discover`] stream: a task applies the changes through the handle,
//! every change the stream has ready as one.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::discover::{Change, Discover};
use tower_prism_core::BoxError;

use crate::config::BalanceConfig;
use crate::error::Error;
use crate::{Balance, BalanceHandle, MAX_ENDPOINTS};

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
    let task = runtime.spawn(async move {
        let mut discover = Box::pin(discover);
        loop {
            let batch = std::future::poll_fn(|cx| next_batch(discover.as_mut(), cx)).await;
            let Some(shared) = weak.upgrade() else { return };
            let handle = BalanceHandle { shared };
            let full = batch.changes.len() == MAX_BATCH;
            let (remove, add) = coalesce(batch.changes);
            let refused = handle.change(&remove, add).refused.len();
            if refused > 0 {
                tracing::warn!(balancer = %handle.shared.policy.name, refused, "discovered endpoints refused: a balancer holds at most {MAX_ENDPOINTS}");
            }
            match batch.end {
                None => {}
                Some(Some(e)) => {
                    tracing::warn!(balancer = %handle.shared.policy.name, error = %e, "discovery failed; endpoint set frozen");
                    return;
                }
                Some(None) => return,
            }
            if full {
                // more may be ready at once: let the runtime's other tasks run first
                tokio::task::yield_now().await;
            }
        }
    });
    // Aborted with the balancer, as its health checks are: a stream that never yields
    // again would keep the task, and what the stream owns, alive for good.
    handle.shared.tasks.add(task.abort_handle());
    Ok(())
}

/// The most changes applied as one: a stream that has thousands ready at once (a first
/// listing) is applied in a few passes, and the task yields between them.
const MAX_BATCH: usize = 1024;

/// Changes a stream had ready, and how it ended, if it did.
struct Batch<K, S> {
    changes: Vec<Change<K, S>>,
    /// `Some(Some(error))`: it failed; `Some(None)`: it ended.
    end: Option<Option<BoxError>>,
}

/// Every change `discover` has ready (at least one, at most [`MAX_BATCH`]), so that a
/// burst is applied with one rebuild of the endpoint set rather than one per change.
fn next_batch<D>(mut discover: Pin<&mut D>, cx: &mut Context<'_>) -> Poll<Batch<D::Key, D::Service>>
where
    D: Discover,
    D::Error: Into<BoxError>,
{
    let mut changes = Vec::new();
    let end = loop {
        match discover.as_mut().poll_discover(cx) {
            Poll::Ready(Some(Ok(change))) => {
                changes.push(change);
                if changes.len() == MAX_BATCH {
                    break None;
                }
            }
            Poll::Ready(Some(Err(e))) => break Some(Some(e.into())),
            Poll::Ready(None) => break Some(None),
            Poll::Pending if changes.is_empty() => return Poll::Pending,
            Poll::Pending => break None,
        }
    };
    Poll::Ready(Batch { changes, end })
}

/// The changes, in order, as one removal list and one addition list with the same end
/// result when the removals are applied first: a key inserted then removed is only
/// removed, one removed then inserted is replaced, the last insert of a key wins.
fn coalesce<K: Eq + Hash + Clone, S>(changes: Vec<Change<K, S>>) -> (Vec<K>, Vec<(K, S, u32)>) {
    let mut remove = Vec::new();
    let mut add: Vec<Option<(K, S, u32)>> = Vec::new();
    let mut at: HashMap<K, usize> = HashMap::new();
    for change in changes {
        match change {
            Change::Insert(key, service) => match at.get(&key) {
                Some(&i) => add[i] = Some((key, service, 1)),
                None => {
                    at.insert(key.clone(), add.len());
                    add.push(Some((key, service, 1)));
                }
            },
            Change::Remove(key) => {
                if let Some(i) = at.remove(&key) {
                    add[i] = None;
                }
                remove.push(key);
            }
        }
    }
    (remove, add.into_iter().flatten().collect())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn coalesced_changes_end_where_the_changes_in_order_do() {
        let changes = vec![
            Change::Insert("a", 1),
            Change::Insert("b", 2),
            Change::Remove("a"),
            Change::Insert("c", 3),
            Change::Remove("d"),
            Change::Insert("b", 20),
            Change::Remove("c"),
            Change::Insert("c", 30),
        ];
        let (remove, add) = coalesce(changes);
        assert_eq!(remove, ["a", "d", "c"]);
        assert_eq!(add, [("b", 20, 1), ("c", 30, 1)]);
    }
}
