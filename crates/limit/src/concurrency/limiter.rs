//! [`ConcurrencyLimiter`]: the shared in-flight cap, its algorithm, metrics and waiters.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::task::Poll;
use std::time::Duration;

use metrics::{Counter, Gauge};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower_prism_core::config::ConfigError;
use tower_prism_core::internal::{lock, nanos};
use tower_prism_core::metrics::{ratelimit as names, LABEL_NAME, LABEL_REASON};
use tower_prism_core::{Clock, Moment, Outcome, TimeSource};

use super::algorithm::{LimitState, Sample};
use super::config::ConcurrencyConfig;
use super::permits::Permits;
use crate::error::Error;

const NO_WAIT: u64 = u64::MAX;
const NEVER_SKIP: u64 = u64::MAX;
const NO_CAP: usize = usize::MAX;

/// An adaptive cap on requests in flight, shared by every clone.
///
/// Acquiring a permit is one compare-and-swap on a packed atomic (no lock, no allocation);
/// the permit is given back when the call finishes or its future is dropped. Each finished
/// call's latency and [`Outcome`] move the limit through the configured algorithm under a
/// short lock: a success sample is skipped rather than waited for if another thread holds
/// it, an AIMD success at under half the limit (a no-op) skips it altogether, failures
/// always count under AIMD and the gradient and never take the lock under Vegas (which
/// ignores them). The clock is read only if the algorithm uses latency.
///
/// Waiting (with `max_wait`) is the cold path: the wait is a boxed future on a
/// tokio `Notify`, woken one waiter per finished call, with no FIFO guarantee. A request
/// counts as waiting from its call (before its future is polled), so that `max_waiters`
/// bounds a flood of calls made at once.
#[derive(Clone)]
pub struct ConcurrencyLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    permits: Permits,
    /// On its own cache lines: every finished call may lock it.
    state: Padded<Mutex<LimitState>>,
    config: Mutex<ConcurrencyConfig>,
    /// `max_wait` in nanoseconds, or [`NO_WAIT`].
    max_wait: AtomicU64,
    /// `max_waiters`, or [`NO_CAP`].
    max_waiters: AtomicUsize,
    /// Whether the algorithm needs latencies; if not, the hot path reads no clock.
    timed: AtomicBool,
    /// Where latencies are read ([`Clock::Auto`]: the CPU's counter, or tokio's clock when
    /// it is paused at the first reading).
    time: TimeSource,
    /// [`LimitState::idle_success_bound`] in nanoseconds, or [`NEVER_SKIP`].
    idle_skip: AtomicU64,
    /// [`LimitState::reads_failures`]: if not, failures are released without the lock.
    reads_failures: AtomicBool,
    waiters: AtomicUsize,
    notify: Notify,
    metrics: Metrics,
}

/// Keeps a value on cache lines of its own (no false sharing with its neighbours).
#[repr(align(128))]
struct Padded<T>(T);

struct Metrics {
    limit: Gauge,
    in_flight: Gauge,
    limit_reached: Counter,
    timeout: Counter,
}

impl Metrics {
    fn new(name: &str) -> Self {
        let rejected = |reason: &'static str| metrics::counter!(names::REJECTED_TOTAL, LABEL_NAME => name.to_owned(), LABEL_REASON => reason);
        Metrics {
            limit: metrics::gauge!(names::CONCURRENCY_LIMIT, LABEL_NAME => name.to_owned()),
            in_flight: metrics::gauge!(names::IN_FLIGHT, LABEL_NAME => name.to_owned()),
            limit_reached: rejected("concurrency"),
            timeout: rejected("concurrency_timeout"),
        }
    }
}

/// The limiter's state at one moment, for health endpoints and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConcurrencySnapshot {
    /// The limit now.
    pub limit: u32,
    /// Requests holding a permit now (may exceed `limit` right after it was lowered).
    pub in_flight: u32,
    /// The configured floor.
    pub min_limit: u32,
    /// The configured ceiling.
    pub max_limit: u32,
    /// Requests waiting for a permit now.
    pub waiting: usize,
}

/// Permission for one request to be in flight. Dropping it gives the slot back without
/// feeding the algorithm; [`finish`](Permit::finish) also reports how the call went.
pub struct Permit {
    shared: Arc<Shared>,
    in_flight: u32,
    /// When the call started; `None` if the algorithm does not use latency.
    start: Option<Moment>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("name", &self.shared.name)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl fmt::Debug for ConcurrencyLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("name", &self.shared.name)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl ConcurrencyLimiter {
    /// A limiter named `name` (the metrics label and log field) from a config, which is
    /// validated first.
    pub(crate) fn new(name: String, config: ConcurrencyConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let metrics = Metrics::new(&name);
        let state = LimitState::new(&config);
        let timed = state.uses_latency();
        let skip = idle_skip(&state);
        let reads_failures = state.reads_failures();
        metrics.limit.set(f64::from(state.limit()));
        Ok(ConcurrencyLimiter {
            shared: Arc::new(Shared {
                permits: Permits::new(state.limit()),
                state: Padded(Mutex::new(state)),
                max_wait: AtomicU64::new(wait_to_nanos(config.max_wait)),
                max_waiters: AtomicUsize::new(waiters_cap(config.max_waiters)),
                timed: AtomicBool::new(timed),
                time: TimeSource::new(Clock::Auto),
                idle_skip: AtomicU64::new(skip),
                reads_failures: AtomicBool::new(reads_failures),
                config: Mutex::new(config),
                waiters: AtomicUsize::new(0),
                notify: Notify::new(),
                metrics,
                name,
            }),
        })
    }

    /// The policy name used in metrics and logs.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The config in force (after any [`reconfigure`](Self::reconfigure)).
    pub fn config(&self) -> ConcurrencyConfig {
        lock(&self.shared.config).clone()
    }

    /// How long a request may wait for a permit, if at all.
    pub fn max_wait(&self) -> Option<Duration> {
        match self.shared.max_wait.load(Ordering::Relaxed) {
            NO_WAIT => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// Limit, in-flight and waiters now: three atomic loads and a short lock for the bounds.
    pub fn snapshot(&self) -> ConcurrencySnapshot {
        let (limit, in_flight) = self.shared.permits.load();
        let (min_limit, max_limit) = {
            let config = lock(&self.shared.config);
            (config.min_limit, config.max_limit)
        };
        ConcurrencySnapshot {
            limit,
            in_flight,
            min_limit,
            max_limit,
            waiting: self.shared.waiters.load(Ordering::Relaxed),
        }
    }

    /// Takes a permit now, or fails with [`Error::ConcurrencyLimited`] (counted in the
    /// rejection metric). Never waits, whatever `max_wait` says.
    pub fn try_acquire(&self) -> Result<Permit, Error> {
        self.acquire_now()
            .map_err(|limit| self.reject(Error::ConcurrencyLimited { limit }))
    }

    /// Takes a permit, waiting up to `max_wait` for one to come free. Without `max_wait` it
    /// is [`try_acquire`](Self::try_acquire), and while `max_waiters` requests wait it
    /// fails as that does. Waiters are woken one per finished call, but a newcomer may take
    /// the freed slot first (no FIFO guarantee).
    pub fn acquire(&self) -> impl Future<Output = Result<Permit, Error>> + Send + 'static {
        let limiter = self.clone();
        async move {
            match limiter.acquire_now() {
                Ok(permit) => Ok(permit),
                Err(limit) => limiter.queue(limit)?.wait(limit).await,
            }
        }
    }

    /// Applies a new config to the running limiter (hot reload): the current limit is kept
    /// but clamped into the new bounds, the algorithm's parameters, `max_wait` and
    /// `max_waiters` change, and requests in flight keep their permits (and requests
    /// waiting, their places).
    pub fn reconfigure(&self, config: &ConcurrencyConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut state = lock(&self.shared.state.0);
        state.reconfigure(config);
        self.shared
            .max_wait
            .store(wait_to_nanos(config.max_wait), Ordering::Relaxed);
        self.shared
            .max_waiters
            .store(waiters_cap(config.max_waiters), Ordering::Relaxed);
        self.shared
            .timed
            .store(state.uses_latency(), Ordering::Relaxed);
        self.shared
            .idle_skip
            .store(idle_skip(&state), Ordering::Relaxed);
        self.shared
            .reads_failures
            .store(state.reads_failures(), Ordering::Relaxed);
        self.shared.apply_limit(state.limit(), "reconfigured");
        *lock(&self.shared.config) = config.clone();
        drop(state);
        tracing::info!(name = %self.shared.name, limit = self.shared.permits.limit(), "concurrency limiter reconfigured");
        Ok(())
    }

    /// The hot path: one CAS. `Err(limit)` when the limit is reached.
    #[inline]
    pub(crate) fn acquire_now(&self) -> Result<Permit, u32> {
        let in_flight = self.shared.permits.try_acquire()?;
        self.shared.metrics.in_flight.increment(1.0);
        Ok(Permit {
            shared: Arc::clone(&self.shared),
            in_flight,
            start: self.shared.now(),
        })
    }

    /// Counts and logs a rejection, and gives it back.
    pub(crate) fn reject(&self, error: Error) -> Error {
        match error {
            Error::ConcurrencyLimited { .. } => self.shared.metrics.limit_reached.increment(1),
            Error::ConcurrencyTimeout { .. } => self.shared.metrics.timeout.increment(1),
            // The other limiters' rejections: never made here.
            _ => {}
        }
        tracing::debug!(name = %self.shared.name, reason = error.reason(), "concurrency limiter rejected a request");
        error
    }

    /// A place among the waiters after `acquire_now` failed at `limit`, or the refusal
    /// (counted) when the limiter does not wait or `max_waiters` requests already wait.
    pub(crate) fn queue(&self, limit: u32) -> Result<Waiter, Error> {
        let shared = &self.shared;
        let refused = || self.reject(Error::ConcurrencyLimited { limit });
        if shared.max_wait.load(Ordering::Relaxed) == NO_WAIT {
            return Err(refused());
        }
        // The count is SeqCst, as `Permit::drop` reads it after releasing a permit.
        let cap = shared.max_waiters.load(Ordering::Relaxed);
        if cap == NO_CAP {
            shared.waiters.fetch_add(1, Ordering::SeqCst);
        } else if shared
            .waiters
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_err()
        {
            return Err(refused());
        }
        Ok(Waiter {
            limiter: self.clone(),
        })
    }
}

/// A request counted among a limiter's waiters, until it is dropped.
pub(crate) struct Waiter {
    limiter: ConcurrencyLimiter,
}

impl Waiter {
    /// Waits up to `max_wait` for a permit, after `acquire_now` failed at `limit`.
    pub(crate) async fn wait(self, limit: u32) -> Result<Permit, Error> {
        let limiter = &self.limiter;
        // A reload may have turned waiting off since the request was queued.
        let Some(max_wait) = limiter.max_wait() else {
            return Err(limiter.reject(Error::ConcurrencyLimited { limit }));
        };
        let start = Instant::now();
        let shared = &limiter.shared;
        let mut sleep = pin!(tokio::time::sleep_until(start + max_wait));
        loop {
            let mut notified = pin!(shared.notify.notified());
            notified.as_mut().enable();
            // Pairs with the SeqCst release in `Permit::drop`: either this try sees the freed slot
            // or that release sees this waiter and notifies.
            fence(Ordering::SeqCst);
            if let Ok(permit) = limiter.acquire_now() {
                return Ok(permit);
            }
            let woken = poll_fn(|cx| {
                if notified.as_mut().poll(cx).is_ready() {
                    Poll::Ready(true)
                } else if sleep.as_mut().poll(cx).is_ready() {
                    Poll::Ready(false)
                } else {
                    Poll::Pending
                }
            })
            .await;
            if !woken {
                // One last try: a slot may have freed as the timer fired.
                if let Ok(permit) = limiter.acquire_now() {
                    return Ok(permit);
                }
                let waited = start.elapsed();
                return Err(limiter.reject(Error::ConcurrencyTimeout { waited }));
            }
        }
    }
}

impl Shared {
    /// The time now, if the algorithm uses latency (a clock read costs 10-25 ns).
    #[inline]
    fn now(&self) -> Option<Moment> {
        self.timed
            .load(Ordering::Relaxed)
            .then(|| self.time.moment())
    }

    /// Sets the permits' limit from the algorithm (called with the state lock held, so
    /// limit writes are ordered), with its gauge, event and wake-ups.
    fn apply_limit(&self, new: u32, why: &'static str) {
        let shared = self;
        let old = shared.permits.limit();
        if new == old {
            return;
        }
        shared.permits.set_limit(new);
        shared.metrics.limit.set(f64::from(new));
        if new < old {
            tracing::info!(name = %shared.name, from = old, to = new, reason = why, "concurrency limit lowered");
        } else {
            tracing::debug!(name = %shared.name, from = old, to = new, reason = why, "concurrency limit raised");
            if shared.waiters.load(Ordering::SeqCst) > 0 {
                shared.notify.notify_waiters();
            }
        }
    }

    /// The service shed a call, or an attempt of one: a drop for the algorithm.
    fn record_shed(&self) {
        let new = lock(&self.state.0).shed();
        self.apply_limit(new, "shed");
    }

    fn record(&self, sample: Sample) {
        if !sample.outcome.is_success()
            && (sample.outcome == Outcome::Fatal || !self.reads_failures.load(Ordering::Relaxed))
        {
            // Changes nothing: a fatal outcome never does, nor a failure under Vegas.
            return;
        }
        let skip = self.idle_skip.load(Ordering::Relaxed);
        if skip != NEVER_SKIP
            && sample.outcome.is_success()
            && sample.latency.as_nanos() <= u128::from(skip)
            && u64::from(sample.in_flight) * 2 < u64::from(self.permits.limit())
        {
            // AIMD at low use: a no-op (the estimate is at least the limit), so no lock.
            return;
        }
        let mut state = if sample.outcome.is_success() {
            match self.state.0.try_lock() {
                Ok(state) => state,
                Err(TryLockError::WouldBlock) => return,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
            }
        } else {
            lock(&self.state.0)
        };
        let new = state.update(sample);
        let why = if sample.outcome.is_success() {
            "sample"
        } else {
            "failure"
        };
        self.apply_limit(new, why);
    }
}

impl Permit {
    /// Restarts the latency clock if the permit is timed: the call to the inner service
    /// only starts now (after a wait for its readiness), or a retry below just sent a new
    /// attempt and the sample is the attempt that answers. The slot stays held while the
    /// request waits to retry: lent out, it would let new calls in to meet the failure the
    /// retry is waiting out (in failures that come in runs, measurably more of them).
    pub(crate) fn restart_clock(&mut self) {
        if self.start.is_some() {
            self.start = self.shared.now();
        }
    }

    /// Reports that the service shed this call, or an attempt of it that a retry below
    /// waits to send again (a 429 or 503 with `Retry-After`): the limit is lowered at once.
    /// The permit stays held; a call that ends shed is then dropped, with no latency sample.
    pub(crate) fn report_shed(&self) {
        self.shared.record_shed();
    }

    /// Requests in flight when this permit was taken, itself included.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Gives the permit back and feeds the call's latency (since the permit was taken) and
    /// outcome to the algorithm. (A permit taken while the algorithm ignored latency, then
    /// finished after a reconfiguration to one that uses it, is released without a sample.)
    pub fn finish(self, outcome: Outcome) {
        let latency = match self.start {
            Some(start) => start.elapsed_to(self.shared.time.moment()),
            None if self.shared.timed.load(Ordering::Relaxed) => return,
            None => Duration::ZERO,
        };
        let sample = Sample {
            latency,
            in_flight: self.in_flight,
            outcome,
        };
        self.shared.record(sample);
        // Dropping `self` releases the slot.
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.permits.release();
        shared.metrics.in_flight.decrement(1.0);
        // `release` is a SeqCst RMW and this a SeqCst load: with the fence in `wait`, a
        // waiter either sees the freed slot or is seen here.
        if shared.waiters.load(Ordering::SeqCst) > 0 {
            shared.notify.notify_one();
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.limiter.shared.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

fn idle_skip(state: &LimitState) -> u64 {
    state
        .idle_success_bound()
        .map_or(NEVER_SKIP, |bound| nanos(bound).min(NEVER_SKIP - 1))
}

fn wait_to_nanos(wait: Option<Duration>) -> u64 {
    wait.map_or(NO_WAIT, |d| nanos(d).min(NO_WAIT - 1))
}

fn waiters_cap(max_waiters: Option<u32>) -> usize {
    max_waiters.map_or(NO_CAP, |n| n as usize)
}
