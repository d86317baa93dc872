//! The refresh task: resolves the name every interval and makes the balancer's endpoints
//! follow the answers, through the same [`BalanceHandle`] calls a user makes.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;

use tokio::sync::{watch, Notify};
use tower_prism_core::internal::lock;
use tower_prism_core::BoxError;

use super::config::DnsConfig;
use super::metrics::DnsMetrics;
use super::plan::plan;
use super::resolve::Resolve;
use super::DnsSnapshot;
use crate::service::Shared;
use crate::{BalanceHandle, MAX_ENDPOINTS};

/// What the handle and the task share: the config in effect, and a wake-up for a
/// resolution now (after a reconfigure, or on request).
#[derive(Debug)]
pub(crate) struct Control {
    pub(crate) config: Mutex<DnsConfig>,
    pub(crate) wake: Notify,
}

/// Why a resolution gave nothing to apply.
enum Failure {
    Timeout,
    Panicked,
    Empty,
    Error(BoxError),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("resolution timed out"),
            Failure::Panicked => f.write_str("the resolver panicked"),
            Failure::Empty => f.write_str("the name has no addresses"),
            Failure::Error(e) => write!(f, "resolution failed: {e}"),
        }
    }
}

/// The task's own state between rounds.
pub(crate) struct Refresh<R, F, S> {
    pub(crate) balancer: Weak<Shared<SocketAddr, S>>,
    pub(crate) control: Arc<Control>,
    pub(crate) resolver: R,
    pub(crate) make_endpoint: F,
    pub(crate) status: watch::Sender<DnsSnapshot>,
    pub(crate) metrics: DnsMetrics,
}

impl<R, F, S> Refresh<R, F, S>
where
    R: Resolve,
    F: Fn(SocketAddr) -> S + Send + Sync + 'static,
    S: Send + 'static,
{
    /// Resolves now, then every interval (or at once when woken), until the balancer is
    /// dropped; the task is also aborted when the last [`DnsHandle`](crate::DnsHandle) goes.
    /// Abort only lands on an `await`, so a round of changes is applied whole or not at all.
    pub(crate) async fn run(self) {
        let mut known = BTreeSet::new();
        loop {
            if self.balancer.strong_count() == 0 {
                return;
            }
            let config = lock(&self.control.config).clone();
            let answer = resolve(&self.resolver, &config).await;
            {
                let Some(shared) = self.balancer.upgrade() else {
                    return;
                };
                let balancer = BalanceHandle { shared };
                match answer {
                    Ok(answer) => self.apply(&balancer, &config, &mut known, &answer),
                    Err(failure) => self.keep(&balancer, &config, &failure),
                }
            }
            // a timeout is the plain wait; a wake-up (reconfigure, refresh) cuts it short
            let _ = tokio::time::timeout(config.interval, self.control.wake.notified()).await;
        }
    }

    fn apply(
        &self,
        balancer: &BalanceHandle<SocketAddr, S>,
        config: &DnsConfig,
        known: &mut BTreeSet<SocketAddr>,
        answer: &BTreeSet<SocketAddr>,
    ) {
        let present: BTreeSet<SocketAddr> = balancer.keys().into_iter().collect();
        let changes = plan(known, &present, answer);
        // What the balancer can take once the dropped addresses are gone: an answer over the
        // cap is followed up to it, and the services for the rest are never made. Removals
        // and additions land together (`change`), so a name whose every address changed
        // never leaves the balancer empty, even at the cap.
        let room = MAX_ENDPOINTS.saturating_sub(present.len() - changes.remove.len());
        let fits = changes.add.len().min(room);
        let mut made = Vec::with_capacity(fits);
        for addr in &changes.add[..fits] {
            match catch_unwind(AssertUnwindSafe(|| (self.make_endpoint)(*addr))) {
                Ok(service) => made.push((*addr, service, 1)),
                Err(_) => {
                    tracing::error!(balancer = %balancer.name(), host = %config.host, %addr, "dns discovery: making the endpoint panicked; address skipped");
                }
            }
        }
        let added: Vec<SocketAddr> = made.iter().map(|(addr, _, _)| *addr).collect();
        let changed = balancer.change(&changes.remove, made);
        for addr in &changes.remove {
            known.remove(addr);
        }
        known.extend(added.iter().filter(|a| !changed.refused.contains(a)));
        let over_capacity = changes.add.len() - fits + changed.refused.len();
        let was_over = self.status.borrow().over_capacity;
        if over_capacity != was_over && over_capacity > 0 {
            // once per change of the shortfall, not once per interval while it lasts
            tracing::warn!(balancer = %balancer.name(), host = %config.host, addresses = answer.len(), left_out = over_capacity, "dns discovery: the answer holds more addresses than the balancer takes ({MAX_ENDPOINTS}); the rest are left out");
        }
        let recovered = self.status.borrow().consecutive_failures > 0;
        if recovered {
            tracing::info!(balancer = %balancer.name(), host = %config.host, addresses = answer.len(), "dns discovery: resolving again");
        }
        if !changes.add.is_empty() || !changes.remove.is_empty() {
            tracing::debug!(balancer = %balancer.name(), host = %config.host, added = changes.add.len(), removed = changes.remove.len(), "dns discovery: endpoints follow the answer");
        }
        self.metrics.ok.increment(1);
        self.metrics.addresses.set(known.len() as f64);
        self.status.send_modify(|s| {
            s.addresses = known.iter().copied().collect();
            s.resolutions += 1;
            s.over_capacity = over_capacity;
            s.consecutive_failures = 0;
            s.last_error = None;
        });
    }

    fn keep(&self, balancer: &BalanceHandle<SocketAddr, S>, config: &DnsConfig, failure: &Failure) {
        let first = self.status.borrow().consecutive_failures == 0;
        let kept = self.status.borrow().addresses.len();
        // one warning per outage, not one per interval while it lasts
        if first {
            tracing::warn!(balancer = %balancer.name(), host = %config.host, kept, "dns discovery: {failure}; keeping the last good endpoints");
        } else {
            tracing::debug!(balancer = %balancer.name(), host = %config.host, kept, "dns discovery: {failure}; keeping the last good endpoints");
        }
        let counter = match failure {
            Failure::Timeout => &self.metrics.timeout,
            Failure::Panicked => &self.metrics.panic,
            Failure::Empty => &self.metrics.empty,
            Failure::Error(_) => &self.metrics.error,
        };
        counter.increment(1);
        let text = failure.to_string();
        self.status.send_modify(|s| {
            s.failures += 1;
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.last_error = Some(text);
        });
    }
}

/// One resolution, bounded by the timeout; a panic in the resolver is a failure. The
/// answer is deduplicated and sorted.
async fn resolve<R: Resolve>(
    resolver: &R,
    config: &DnsConfig,
) -> Result<BTreeSet<SocketAddr>, Failure> {
    let started = catch_unwind(AssertUnwindSafe(|| {
        resolver.resolve(&config.host, config.port)
    }));
    let Ok(future) = started else {
        return Err(Failure::Panicked);
    };
    let mut future = std::pin::pin!(future);
    let guarded = std::future::poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(answer)) => Poll::Ready(Some(answer)),
            Err(_) => Poll::Ready(None),
        }
    });
    match tokio::time::timeout(config.timeout, guarded).await {
        Err(_) => Err(Failure::Timeout),
        Ok(None) => Err(Failure::Panicked),
        Ok(Some(Err(e))) => Err(Failure::Error(e)),
        Ok(Some(Ok(addrs))) if addrs.is_empty() => Err(Failure::Empty),
        Ok(Some(Ok(addrs))) => Ok(addrs.into_iter().collect()),
    }
}
