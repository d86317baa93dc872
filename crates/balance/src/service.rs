//! The balancer service.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tower_prism_core::internal::{lock, route};
use tower_prism_core::BoxError;
use tower_prism_core::{Classify, DefaultClassifier, Moment};
use tower_service::Service;

use crate::config::{BalanceConfig, Strategy};
use crate::endpoint::{Draws, EndpointState, Policy};
use crate::error::Error;
use crate::future::{InFlight, ResponseFuture};
use crate::handle::BalanceHandle;
use crate::probe::Tasks;
use crate::slots::Slots;
use crate::{hash, least_requests, p2c, round_robin, weighted};

pub(crate) type KeyFn<Req> = Arc<dyn Fn(&Req) -> u64 + Send + Sync>;

/// The endpoint set, behind the registry lock (taken only when it changes).
pub(crate) struct Registry<K, S> {
    pub(crate) entries: Vec<Entry<K, S>>,
    pub(crate) topology: Arc<Topology>,
    /// The metrics slots of the endpoints in `entries`.
    pub(crate) slots: Slots,
}

pub(crate) struct Entry<K, S> {
    pub(crate) key: K,
    pub(crate) state: Arc<EndpointState>,
    pub(crate) service: S,
}

/// What every clone copies from the registry when the set changes.
#[derive(Debug, Default)]
pub(crate) struct Topology {
    /// Smooth weighted round-robin order, as indices into the entries.
    pub(crate) schedule: Vec<u32>,
    /// The weights differ: consistent hashing scores by weight, and least requests
    /// scales them by the requests in flight.
    pub(crate) weighted: bool,
}

/// The topology of a clone that has not copied the registry's yet (it has no endpoints
/// either): a static, so that a new clone neither allocates nor counts a reference.
static NO_TOPOLOGY: Topology = Topology {
    schedule: Vec::new(),
    weighted: false,
};

/// A balancer clone's topology: the one copied with its endpoints, or none yet. Takes the
/// field rather than the balancer, so a pick can draw from `draws` while it holds it.
#[inline]
fn topology_of(copied: &Option<Arc<Topology>>) -> &Topology {
    copied.as_deref().unwrap_or(&NO_TOPOLOGY)
}

pub(crate) struct Shared<K, S> {
    pub(crate) policy: Arc<Policy>,
    pub(crate) epoch: AtomicU64,
    pub(crate) registry: Mutex<Registry<K, S>>,
    pub(crate) config: Arc<Mutex<BalanceConfig>>,
    /// Keys and endpoint states without the services, for the health-check task.
    pub(crate) directory: Arc<Directory<K>>,
    pub(crate) has_key_fn: bool,
    /// Wakes the health-check task when the config changes.
    pub(crate) health_wake: Arc<Notify>,
    /// Aborted when the balancer goes. Last: fields drop in order, so the tasks end after
    /// everything else of the balancer is gone.
    pub(crate) tasks: Tasks,
}

pub(crate) type Directory<K> = Mutex<Vec<(K, Arc<EndpointState>)>>;

impl<K, S> Shared<K, S> {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry<K, S>> {
        lock(&self.registry)
    }
}

impl<K, S> Registry<K, S> {
    /// Rebuilds what clones copy and the directory; call with the lock held, then bump the epoch.
    pub(crate) fn rebuild(&mut self, directory: &Directory<K>)
    where
        K: Clone,
    {
        *lock(directory) = self
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.state.clone()))
            .collect();
        if let Some(first) = self.entries.first() {
            first
                .state
                .policy
                .peers
                .set(self.entries.iter().map(|e| Arc::downgrade(&e.state)));
        }
        self.rebuild_topology();
    }

    /// Rebuilds the weights' derived state clones copy; call with the lock held, then bump
    /// the epoch.
    pub(crate) fn rebuild_topology(&mut self) {
        let weights: Vec<u32> = self
            .entries
            .iter()
            .map(|e| e.state.weight.load(Ordering::Relaxed))
            .collect();
        // Only a weighted round robin reads the schedule, and building it costs endpoints
        // times total weight (seconds at thousands of endpoints of unequal weights, under
        // the registry's lock): the other strategies skip it, and a reconfigure to a
        // weighted round robin rebuilds.
        let strategy = self.entries.first().map(|e| e.state.policy.strategy());
        let schedule = if strategy == Some(Strategy::WeightedRoundRobin) {
            weighted::schedule(&weights)
        } else {
            Vec::new()
        };
        self.topology = Arc::new(Topology {
            schedule,
            weighted: weights.windows(2).any(|w| w[0] != w[1]),
        });
    }
}

struct Local<S> {
    state: Arc<EndpointState>,
    service: S,
    /// `poll_ready` returned ready and no call has used that readiness yet.
    ready: bool,
}

enum Pick {
    Ready(usize),
    Pending,
    NoneHealthy,
    /// Every endpoint in rotation failed its readiness (twice), none was pending.
    AllBroken,
}

/// A load balancer over a changing set of endpoint services, keyed by `K`.
///
/// Every clone shares the endpoint set, the statistics and the health state; each clone
/// keeps its own clones of the endpoint services (so `S: Clone`), refreshed when the set
/// changes. Build one with [`Balance::builder`], [`Balance::new`] or [`Balance::from_discover`];
/// change the set through its [`BalanceHandle`].
///
/// # Readiness
///
/// `poll_ready` picks an endpoint by the strategy among the healthy ones and polls it; an
/// endpoint that is not ready is skipped, not waited on. It returns:
/// - `Ready(Ok)` once a healthy endpoint is ready (that endpoint takes the next `call`);
/// - `Pending` when healthy endpoints exist but none is ready; every polled endpoint has the
///   task's waker, and so has the balancer, which wakes it when the set or health changes
///   (the tower convention, as `tower::balance` does);
/// - `Ready(Ok)` when there is no healthy endpoint at all (and panic mode is off, see
///   [`BalanceConfig::healthy_panic_threshold`]), so that the call's future fails at once
///   with [`Error::NoHealthyEndpoint`] instead of hanging.
///
/// Below `healthy_panic_threshold`, "healthy" above reads "known": picks ignore health.
///
/// It never returns an error: a failing endpoint is dealt with by outlier ejection. When
/// every endpoint in rotation fails its `poll_ready` (a fresh clone of each too, polled
/// again every 10 ms) and none is merely not ready, for [`READINESS_GRACE`] (1 s), it
/// returns `Ready(Ok)` and the call fails with [`Error::NoHealthyEndpoint`]: a caller is
/// not kept waiting for ever on endpoints that all refuse.
///
/// With [`Strategy::ConsistentHash`] the endpoint depends on the request, which `poll_ready`
/// does not see: `call` picks the endpoint by the key, and if that endpoint was not yet polled
/// ready the response future drives a clone of it to readiness first. (So does a `call`
/// made without `poll_ready`, with the endpoint it takes.) If that endpoint leaves the
/// rotation while the request waits for it (removed, ejected or failing its health checks,
/// outside panic mode), the call fails with [`Error::NoHealthyEndpoint`] rather than wait
/// for ever on an endpoint no new call would go to; a retry then goes to one in rotation.
pub struct Balance<K, S, Req, C = DefaultClassifier> {
    handle: BalanceHandle<K, S>,
    locals: Vec<Local<S>>,
    /// The registry's, copied with the endpoints (`None` until then: see [`NO_TOPOLOGY`]).
    topology: Option<Arc<Topology>>,
    /// This clone's random numbers for its picks.
    draws: Draws,
    epoch: u64,
    chosen: Option<usize>,
    picked_at: Option<Moment>,
    /// Armed while a caller waits for what nothing else would wake it for (cold path): an
    /// endpoint that failed `poll_ready` and whose fresh clone failed too (polled again
    /// after [`READINESS_RETRY`]), or an ejection ending (unseen until a pick looks at the
    /// endpoint).
    wake: Option<Pin<Box<Sleep>>>,
    /// An endpoint failed `poll_ready` twice in a row during the last pick.
    readiness_failed: bool,
    /// An endpoint was not ready (`Pending`) during the last pick.
    readiness_pending: bool,
    /// Since when (ms on the balancer's clock, plus one; 0: not) every pick of this clone
    /// found every endpoint in rotation failing `poll_ready`.
    broken_since_ms: u64,
    /// They have for [`READINESS_GRACE`]: the next `call` fails with
    /// [`Error::NoHealthyEndpoint`] rather than wait for one.
    all_broken: bool,
    pub(crate) classify: C,
    pub(crate) key_fn: Option<KeyFn<Req>>,
    _request: PhantomData<fn(Req)>,
}

/// How long a caller waits before endpoints whose `poll_ready` failed (twice in a row)
/// are polled again.
pub(crate) const READINESS_RETRY: Duration = Duration::from_millis(10);

/// How long a caller waits while every endpoint in rotation fails its `poll_ready`, before
/// its call fails with [`Error::NoHealthyEndpoint`]: long enough for a reconnection blip
/// (tower's `Reconnect` fails one poll, then connects), short enough that a caller is not
/// kept waiting on endpoints that all refuse.
pub const READINESS_GRACE: Duration = Duration::from_secs(1);

impl<K, S, Req, C> Balance<K, S, Req, C> {
    pub(crate) fn from_shared(
        shared: Arc<Shared<K, S>>,
        classify: C,
        key_fn: Option<KeyFn<Req>>,
    ) -> Self {
        Balance {
            handle: BalanceHandle { shared },
            locals: Vec::new(),
            topology: None,
            draws: Draws::default(),
            epoch: u64::MAX,
            chosen: None,
            picked_at: None,
            wake: None,
            readiness_failed: false,
            readiness_pending: false,
            broken_since_ms: 0,
            all_broken: false,
            classify,
            key_fn,
            _request: PhantomData,
        }
    }

    /// The handle that adds, removes, inspects and reconfigures the endpoints of this
    /// balancer and all its clones; clone it to keep it apart from the balancer.
    pub fn handle(&self) -> &BalanceHandle<K, S> {
        &self.handle
    }
}

impl<K, S: Clone, Req, C> Balance<K, S, Req, C> {
    /// Copies the endpoint set. Linear in the endpoints: the registry only ever removes
    /// entries (keeping the order of the rest) and appends new ones, so the endpoints that
    /// stay are our old locals in the same order, minus the removed ones.
    #[cold]
    fn refresh(&mut self) {
        let registry = self.handle.shared.registry();
        let mut old = std::mem::take(&mut self.locals).into_iter().peekable();
        self.locals = registry
            .entries
            .iter()
            .map(|entry| {
                while old.next_if(|l| l.state.outlier.is_removed()).is_some() {}
                match old.next_if(|l| Arc::ptr_eq(&l.state, &entry.state)) {
                    // keep our clone of a staying endpoint, with any readiness it has reserved
                    Some(local) => local,
                    None => Local {
                        state: entry.state.clone(),
                        service: entry.service.clone(),
                        ready: false,
                    },
                }
            })
            .collect();
        self.topology = Some(registry.topology.clone());
        self.epoch = self.handle.shared.epoch.load(Ordering::Acquire);
        self.chosen = None;
        self.picked_at = None;
    }

    /// Polls endpoint `i`; `true` when it is ready.
    #[inline]
    fn poll_endpoint<Q>(&mut self, i: usize, cx: &mut Context<'_>) -> bool
    where
        S: Service<Q>,
    {
        if self.locals[i].ready {
            return true;
        }
        // A clone that failed is replaced by a fresh one, polled at once: one that connects
        // (tower's `Reconnect`) registers our waker; one that fails again arms the retry
        // timer, since nothing else would wake a caller waiting on it.
        for fresh in [false, true] {
            let local = &mut self.locals[i];
            match local.service.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    local.ready = true;
                    return true;
                }
                Poll::Pending => {
                    self.readiness_pending = true;
                    return false;
                }
                Poll::Ready(Err(_)) => {
                    local.state.record_broken();
                    if fresh {
                        self.readiness_failed = true;
                        return false;
                    }
                    tracing::warn!(balancer = %local.state.policy.name, endpoint = %local.state.label, "endpoint failed poll_ready; using a fresh clone");
                    let registry = self.handle.shared.registry();
                    if let Some(entry) = registry
                        .entries
                        .iter()
                        .find(|e| Arc::ptr_eq(&e.state, &local.state))
                    {
                        local.service = entry.service.clone();
                    }
                }
            }
        }
        false
    }

    /// Whether this clone's picks have found every endpoint failing its readiness for
    /// [`READINESS_GRACE`], noting when that began if this pick is the first.
    fn broken_for_long(&mut self) -> bool {
        let now = self.handle.shared.policy.now_ms().saturating_add(1);
        if self.broken_since_ms == 0 {
            self.broken_since_ms = now;
        }
        now.saturating_sub(self.broken_since_ms) >= READINESS_GRACE.as_millis() as u64
    }

    /// When the first ejection still running among the endpoints ends, if one is. One
    /// already over but not yet ended (its endpoint is also failing its health checks,
    /// which a pick looks at first) is left out: a timer for it would fire at once, every
    /// time, and a health change wakes the caller anyway.
    fn first_ejection_end(&self) -> Option<Instant> {
        let now_ms = self.handle.shared.policy.now_ms();
        let until_ms = self
            .locals
            .iter()
            .filter_map(|l| l.state.outlier.ejected_until())
            .filter(|until| *until > now_ms)
            .min()?;
        Some(Instant::now() + Duration::from_millis(until_ms - now_ms))
    }

    /// Arms the wake timer for `at`, or keeps it for an earlier time it is armed for, so a
    /// waiting caller picks again then.
    #[cold]
    #[inline(never)]
    fn arm_wake(&mut self, cx: &mut Context<'_>, at: Instant) {
        let timer = self
            .wake
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.is_elapsed() || at < timer.deadline() {
            timer.as_mut().reset(at);
        }
        if timer.as_mut().poll(cx).is_ready() {
            // due already (an ejection over, a pick racing its restoration): at once
            cx.waker().wake_by_ref();
        }
    }

    /// The strategy's first and second choice, both available.
    #[inline]
    fn candidates(&mut self, strategy: Strategy) -> (Option<usize>, Option<usize>) {
        let n = self.locals.len();
        let policy = &self.handle.shared.policy;
        let topology = topology_of(&self.topology);
        match strategy {
            Strategy::P2cPeakEwma => {
                if n == 1 {
                    return (self.locals[0].state.usable().then_some(0), None);
                }
                let (a, b) = p2c::pair(self.draws.next(policy), n);
                let (la, lb) = (&self.locals[a].state, &self.locals[b].state);
                match (la.usable(), lb.usable()) {
                    (true, true) => {
                        let now = policy.now();
                        self.picked_at = Some(now);
                        let (now_ms, decay) = (policy.ms_of(now), policy.decay_ms());
                        if lb.load(now_ms, decay) < la.load(now_ms, decay) {
                            (Some(b), Some(a))
                        } else {
                            (Some(a), Some(b))
                        }
                    }
                    (true, false) => (Some(a), None),
                    (false, true) => (Some(b), None),
                    (false, false) => (None, None),
                }
            }
            Strategy::WeightedRoundRobin if !topology.schedule.is_empty() => {
                let first = weighted::first(&topology.schedule, policy.ticket(), |i| {
                    i < n && self.locals[i].state.usable()
                });
                (first, None)
            }
            // Also a weighted round robin whose schedule this clone has not seen yet (the
            // strategy changed a moment ago; its rebuild follows).
            Strategy::RoundRobin | Strategy::WeightedRoundRobin => {
                let usable = |i: usize| self.locals[i].state.usable();
                (round_robin::turn(policy.ticket(), n, usable), None)
            }
            Strategy::LeastRequests if topology.weighted => {
                let (locals, bias) = (&self.locals, policy.active_request_bias());
                let first = least_requests::pick(
                    self.draws.next(policy),
                    n,
                    |i| locals[i].state.usable(),
                    |i| locals[i].state.effective_weight(bias),
                );
                (first, None)
            }
            Strategy::LeastRequests => {
                // ties go to the first in rotation from the pick's turn
                let usable = |i: usize| self.locals[i].state.usable();
                let Some(start) = round_robin::turn(policy.ticket(), n, usable) else {
                    return (None, None);
                };
                let best = round_robin::from(start, n)
                    .filter(|i| self.locals[*i].state.usable())
                    .min_by_key(|i| self.locals[*i].state.calls.in_flight());
                (best, None)
            }
            Strategy::ConsistentHash => (None, None),
        }
    }

    /// A healthy endpoint outside `mask` by the strategy (cold: hedges only), or `None`.
    #[cold]
    fn pick_avoiding(&mut self, mask: u64) -> Option<usize> {
        let policy = &self.handle.shared.policy;
        let locals = &self.locals;
        let topology = topology_of(&self.topology);
        let n = locals.len();
        let ok = |i: &usize| locals[*i].state.usable() && route::endpoint_bit(*i) & mask == 0;
        match policy.strategy() {
            Strategy::P2cPeakEwma => {
                let now_ms = policy.now_ms();
                let load = |i: usize| locals[i].state.load(now_ms, policy.decay_ms());
                p2c::pick_among(self.draws.next(policy), n, ok, load)
            }
            Strategy::LeastRequests if topology.weighted => {
                let bias = policy.active_request_bias();
                let weight = |i: usize| locals[i].state.effective_weight(bias);
                least_requests::pick(self.draws.next(policy), n, |i| ok(&i), weight)
            }
            Strategy::LeastRequests => (0..n)
                .filter(ok)
                .min_by_key(|i| locals[*i].state.calls.in_flight()),
            Strategy::WeightedRoundRobin if !topology.schedule.is_empty() => {
                weighted::first(&topology.schedule, policy.ticket(), |i| i < n && ok(&i))
            }
            Strategy::RoundRobin | Strategy::WeightedRoundRobin | Strategy::ConsistentHash => {
                round_robin::from(round_robin::start(policy.ticket(), n.max(1)), n).find(ok)
            }
        }
    }

    #[inline]
    fn pick<Q>(&mut self, cx: &mut Context<'_>) -> Pick
    where
        S: Service<Q>,
    {
        let n = self.locals.len();
        if n == 0 {
            return Pick::NoneHealthy;
        }
        let (first, second) = self.candidates(self.handle.shared.policy.strategy());
        for i in [first, second].into_iter().flatten() {
            if self.poll_endpoint(i, cx) {
                return Pick::Ready(i);
            }
        }
        // the preferred endpoints are not ready (or not healthy): take any ready healthy one
        let start = first.map_or(0, |f| f + 1);
        let mut any_available = first.is_some();
        for i in round_robin::from(start, n) {
            if !self.locals[i].state.usable() {
                continue;
            }
            any_available = true;
            if self.poll_endpoint(i, cx) {
                return Pick::Ready(i);
            }
        }
        if !any_available {
            if self.handle.shared.policy.awaiting_probe() {
                // an endpoint's first probe is under way (it runs at once): its verdict
                // wakes the caller
                Pick::Pending
            } else {
                Pick::NoneHealthy
            }
        } else if self.readiness_failed && !self.readiness_pending {
            // every endpoint in rotation failed `poll_ready`, a fresh clone too, and none
            // is merely not ready: nothing says one will be (every connection refused)
            Pick::AllBroken
        } else {
            Pick::Pending
        }
    }
}

impl<K, S, Req, C> Service<Req> for Balance<K, S, Req, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.handle.shared.epoch.load(Ordering::Acquire) != self.epoch {
            self.refresh();
        }
        if self.chosen.is_some() {
            return Poll::Ready(Ok(()));
        }
        self.readiness_failed = false;
        self.readiness_pending = false;
        self.all_broken = false;
        match self.pick::<Req>(cx) {
            Pick::Ready(i) => {
                self.chosen = Some(i);
                self.wake = None;
                self.broken_since_ms = 0;
                Poll::Ready(Ok(()))
            }
            Pick::NoneHealthy => {
                self.broken_since_ms = 0;
                Poll::Ready(Ok(()))
            }
            Pick::AllBroken if self.broken_for_long() => {
                self.all_broken = true;
                self.broken_since_ms = 0;
                Poll::Ready(Ok(()))
            }
            pick @ (Pick::Pending | Pick::AllBroken) => {
                if matches!(pick, Pick::Pending) {
                    self.broken_since_ms = 0;
                }
                // A pick that found its endpoints not ready took a reading for a call that
                // is not made now: a later call must not count the wait as its latency.
                self.picked_at = None;
                self.handle.shared.policy.register(cx.waker());
                let retry = self
                    .readiness_failed
                    .then(|| Instant::now() + READINESS_RETRY);
                let ejection = match self.handle.shared.policy.ejected.load(Ordering::Relaxed) {
                    0 => None,
                    _ => self.first_ejection_end(),
                };
                if let Some(at) = retry.into_iter().chain(ejection).min() {
                    self.arm_wake(cx, at);
                }
                Poll::Pending
            }
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        // Inside a hedging retry's `call_avoiding`: the endpoints its other attempts of the
        // call went to (one thread-local read; `None` on every other call).
        let avoid = route::avoided();
        let target = match (&self.key_fn, self.handle.shared.policy.strategy()) {
            (Some(key_fn), Strategy::ConsistentHash) => {
                self.chosen = None;
                let key = key_fn(&request);
                let locals = &self.locals;
                let weighted = topology_of(&self.topology).weighted;
                let pick = |mask: u64| {
                    let eligible =
                        |i: usize| locals[i].state.usable() && route::endpoint_bit(i) & mask == 0;
                    if weighted {
                        let r = Ordering::Relaxed;
                        let ids = locals
                            .iter()
                            .map(|l| (l.state.id_hash, l.state.weight.load(r)));
                        hash::pick_weighted(key, ids, eligible)
                    } else {
                        hash::pick(key, locals.iter().map(|l| l.state.id_hash), eligible)
                    }
                };
                // the key's runner-up when its own endpoint is avoided, else its own
                match avoid {
                    Some(mask) => pick(mask).or_else(|| pick(0)),
                    None => pick(0),
                }
            }
            _ => self.chosen.take().or_else(|| {
                if std::mem::take(&mut self.all_broken) {
                    return None;
                }
                // `call` without `poll_ready`: any healthy endpoint, readied in the future
                let n = self.locals.len();
                let start = if n == 0 {
                    0
                } else {
                    self.handle.shared.policy.ticket() % n
                };
                round_robin::from(start, n).find(|i| self.locals[*i].state.usable())
            }),
        };
        let target = match (avoid, target) {
            (Some(mask), Some(i)) => {
                // keep the pick unless it is avoided and another healthy endpoint is not
                let i = if route::endpoint_bit(i) & mask != 0 {
                    self.pick_avoiding(mask).unwrap_or(i)
                } else {
                    i
                };
                route::record_pick(i);
                Some(i)
            }
            (_, target) => target,
        };
        let classify = self.classify.clone();
        let Some(i) = target else {
            tracing::debug!(balancer = %self.handle.shared.policy.name, endpoints = self.locals.len(), "no healthy endpoint");
            return ResponseFuture::failed(
                Error::NoHealthyEndpoint {
                    endpoints: self.locals.len(),
                },
                classify,
            );
        };
        let started = self
            .picked_at
            .take()
            .unwrap_or_else(|| self.handle.shared.policy.now());
        let local = &mut self.locals[i];
        let guard = InFlight::new(local.state.clone(), started);
        if local.ready {
            local.ready = false;
            ResponseFuture::called(local.service.call(request), guard, classify)
        } else {
            ResponseFuture::waiting(local.service.clone(), request, guard, classify)
        }
    }
}

/// A clone shares the endpoints, statistics and handle, and copies its own endpoint
/// clones on its first `poll_ready`, not here: cloning allocates nothing, so a stage above
/// that clones the balancer for every call (retry does, to send a retry) costs nothing on
/// calls that never poll the clone.
impl<K, S, Req, C: Clone> Clone for Balance<K, S, Req, C> {
    fn clone(&self) -> Self {
        Balance {
            handle: self.handle.clone(),
            locals: Vec::new(),
            // None, not a clone of ours: whoever clones the balancer for every call (a
            // server per request, a retry) would pay a reference count up and down on each,
            // for a topology the clone replaces on its first poll anyway, with its endpoints
            topology: None,
            // its own stream: a copy of ours would repeat our picks
            draws: Draws::default(),
            epoch: u64::MAX,
            chosen: None,
            picked_at: None,
            wake: None,
            readiness_failed: false,
            readiness_pending: false,
            broken_since_ms: 0,
            all_broken: false,
            classify: self.classify.clone(),
            key_fn: self.key_fn.clone(),
            _request: PhantomData,
        }
    }
}

impl<K, S, Req, C> fmt::Debug for Balance<K, S, Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("name", &self.handle.shared.policy.name)
            .field("strategy", &self.handle.shared.policy.strategy())
            .field("endpoints", &self.locals.len())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Endpoint;

    impl Service<u64> for Endpoint {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<(), Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: u64) -> Self::Future {
            std::future::ready(Ok(()))
        }
    }

    fn schedule_len(strategy: Strategy) -> usize {
        let config = BalanceConfig::builder().strategy(strategy).build().unwrap();
        let b: Balance<usize, Endpoint, u64> = Balance::builder()
            .config(config)
            .endpoints((0..3).map(|i| (i, Endpoint)))
            .weights([(0, 5), (1, 3), (2, 2)])
            .build()
            .unwrap();
        let schedule = b.handle().shared.registry().topology.schedule.len();
        schedule
    }

    /// The schedule costs endpoints times total weight to build, on every change of the
    /// set: only the strategy that reads it builds it.
    #[test]
    fn only_a_weighted_round_robin_builds_its_schedule() {
        assert_eq!(schedule_len(Strategy::WeightedRoundRobin), 10);
        for strategy in [
            Strategy::P2cPeakEwma,
            Strategy::LeastRequests,
            Strategy::RoundRobin,
        ] {
            assert_eq!(schedule_len(strategy), 0, "{strategy:?}");
        }
    }
}
