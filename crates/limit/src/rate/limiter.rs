//! [`RateLimiter`]: the shared state behind every clone of a rate-limited service.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tower_prism_core::config::ConfigError;
use tower_prism_core::internal::{lock, nanos};
use tower_prism_core::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tower_prism_core::HealthReader;
use tower_prism_core::{Clock, TimeSource};

use super::adapt;
use super::adaptive::AdaptiveConfig;
use super::config::RateLimitConfig;
use super::headers::{quote_policy, RateLimitInfo};
use super::metrics::Metrics;
use crate::backend::LocalBackend;
use crate::bucket::{Denied, Quota, TokensLeft};
use crate::error::Error;
use crate::queue::{BucketId, WaitQueue};

struct Adaptive {
    /// The health reader and the bounds and reactions in force, behind one lock: an adapt
    /// step and a reload take it in turn, so that neither stores a rate worked out from the
    /// bounds the other is replacing.
    state: Mutex<AdaptState>,
    next_at: AtomicU64,
    rate_bits: AtomicU64,
}

struct AdaptState {
    reader: HealthReader,
    config: AdaptiveConfig,
}

pub(crate) struct Shared {
    pub(super) backend: LocalBackend,
    time: TimeSource,
    hasher: RandomState,
    pub(super) queue: Mutex<WaitQueue>,
    pub(super) queue_len: AtomicUsize,
    pub(super) queue_capacity: AtomicUsize,
    pub(super) max_wait_nanos: AtomicU64,
    adaptive: Option<Adaptive>,
    pub(super) metrics: Metrics,
    pub(super) name: String,
    /// `name` quoted for rate-limit headers, built once.
    policy: std::sync::Arc<str>,
    /// Whether admitted responses get rate-limit headers (`headers` in the config).
    headers: AtomicBool,
    /// The config in force (after any reconfiguration); read on cold paths only.
    config: Mutex<RateLimitConfig>,
    /// Held by a reconfiguration from start to end, so that two never interleave: each
    /// changes the buckets (every shard of the per-key ones in turn), the queue and the
    /// config one after the other, and racing, they left each with the last writer's.
    reload: Mutex<()>,
}

/// A handle on one rate limiter. Cheap to clone; every clone (and every service built from
/// the same layer) draws from the same buckets.
#[derive(Clone)]
pub struct RateLimiter {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.shared.name)
            .field("backend", &self.shared.backend)
            .finish()
    }
}

/// A point-in-time view of a limiter, for health endpoints and tests.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RateLimitSnapshot {
    /// The effective rate in requests per second (moves when adaptive).
    pub rate_per_second: f64,
    /// Tokens the bucket holds when full.
    pub burst: u32,
    /// Whole tokens free in the unkeyed bucket now.
    pub tokens: u64,
    /// Requests waiting in the queue.
    pub queued: usize,
    /// The queue's capacity (0: no queue).
    pub queue_capacity: usize,
    /// Keys tracked by the per-key buckets.
    pub keys: usize,
}

/// What the fast path decided.
pub(crate) enum Fast {
    /// Admitted, with what is left in the bucket.
    Admitted(TokensLeft),
    Rejected(Error),
    Queue,
}

impl RateLimiter {
    pub(crate) fn build(
        name: String,
        config: &RateLimitConfig,
        backend: LocalBackend,
        adaptive: Option<(HealthReader, AdaptiveConfig)>,
    ) -> Self {
        let metrics = Metrics::new(&name);
        let time = TimeSource::new(config.clock);
        let mut quota = config.quota();
        let adaptive = adaptive.map(|(reader, config)| {
            let rate = quota.per_second().clamp(config.min_rate, config.max_rate);
            if rate != quota.per_second() {
                quota.interval_nanos = interval_for(rate);
            }
            Adaptive {
                next_at: AtomicU64::new(nanos(config.interval)),
                rate_bits: AtomicU64::new(rate.to_bits()),
                state: Mutex::new(AdaptState { reader, config }),
            }
        });
        backend.set_quota(quota, 0);
        metrics.rate.set(quota.per_second());
        metrics.tokens.set(quota.burst as f64);
        RateLimiter {
            shared: Arc::new(Shared {
                backend,
                time,
                hasher: RandomState::new(),
                queue: Mutex::new(WaitQueue::default()),
                queue_len: AtomicUsize::new(0),
                queue_capacity: AtomicUsize::new(config.queue_size),
                max_wait_nanos: AtomicU64::new(config.max_wait.map_or(0, nanos)),
                adaptive,
                metrics,
                policy: quote_policy(&name),
                name,
                headers: AtomicBool::new(config.headers),
                config: Mutex::new(config.clone()),
                reload: Mutex::new(()),
            }),
        }
    }

    /// The policy name used in metrics and logs.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The config in force (after any [`reconfigure`](Self::reconfigure)).
    pub fn config(&self) -> RateLimitConfig {
        lock(&self.shared.config).clone()
    }

    /// The hash a key is tracked under.
    pub(crate) fn hash_key<K: Hash>(&self, key: &K) -> u64 {
        self.shared.hasher.hash_one(key)
    }

    /// The bucket time (nanoseconds since the epoch, on the limiter's clock) at a tokio
    /// reading the caller already has; on the counter (`Clock::Tsc`, or `Clock::Auto` outside
    /// paused time) the counter is read anew.
    #[inline]
    pub(crate) fn since_epoch(&self, now: Instant) -> u64 {
        self.shared.time.at(now)
    }

    /// The bucket time now, on the limiter's clock.
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        self.shared.time.now()
    }

    /// Whether admitted responses get rate-limit headers.
    #[inline]
    pub(crate) fn headers_enabled(&self) -> bool {
        self.shared.headers.load(Ordering::Relaxed)
    }

    /// The state rate-limit headers report for a bucket with `remaining` whole tokens:
    /// the time until it is full again, and the window a full burst is counted over.
    pub(crate) fn info(&self, remaining: u64) -> RateLimitInfo {
        let quota = self.shared.backend.quota();
        let interval = u128::from(quota.interval_nanos);
        let burst = u64::from(quota.burst);
        let nanos = |tokens: u64| {
            Duration::from_nanos(u64::try_from(interval * u128::from(tokens)).unwrap_or(u64::MAX))
        };
        RateLimitInfo {
            policy: self.shared.policy.clone(),
            limit: quota.burst,
            remaining,
            reset: nanos(burst.saturating_sub(remaining)),
            window: nanos(burst),
        }
    }

    /// Where this limiter reads the time.
    pub fn clock(&self) -> Clock {
        self.shared.time.clock()
    }

    /// Asks the backend for `weight` tokens at `at`. A denial is confirmed with a fresh clock
    /// reading (at most twice) before it stands.
    ///
    /// `at` was read before the decision, and it can be stale by the time the CAS runs: this
    /// thread may have been preempted in between, or lost a run of CAS races. Meanwhile
    /// another thread, reading the clock later, moved the TAT up to its own (later) now. With
    /// a small tolerance (1 ms at 10^9/s and a burst of 10^6, or any burst of one) the stale
    /// reading then looks like a request from the past and is refused although the bucket
    /// is (nearly) full, with an inflated `retry_after`. Only the denial path pays for this.
    #[inline]
    pub(super) fn acquire(
        &self,
        bucket: BucketId,
        weight: u32,
        at: u64,
    ) -> Result<TokensLeft, Denied> {
        let backend = &self.shared.backend;
        let first = backend.try_acquire(bucket, weight, at);
        if first.is_ok() {
            return first;
        }
        self.reacquire(bucket, weight, at, first)
    }

    #[cold]
    #[inline(never)]
    fn reacquire(
        &self,
        bucket: BucketId,
        weight: u32,
        mut at: u64,
        mut result: Result<TokensLeft, Denied>,
    ) -> Result<TokensLeft, Denied> {
        for _ in 0..2 {
            let fresh = self.now_nanos();
            if fresh <= at {
                break;
            }
            at = fresh;
            result = self.shared.backend.try_acquire(bucket, weight, at);
            if result.is_ok() {
                break;
            }
        }
        result
    }

    /// The admit path: one clock read, at most one CAS on the unkeyed bucket, no lock, no
    /// allocation.
    #[inline(always)]
    pub(crate) fn fast(&self, bucket: BucketId, weight: u32) -> Fast {
        self.fast_at(bucket, weight, self.now_nanos())
    }

    /// [`fast`](Self::fast) at a given bucket time. The admission is inline; a denial
    /// (a second look at a fresh reading, the queue, the rejection) is out of line, so the
    /// admit path stays small enough to inline into the service's `call`.
    #[inline(always)]
    pub(crate) fn fast_at(&self, bucket: BucketId, weight: u32, at: u64) -> Fast {
        let shared = &*self.shared;
        if shared.adaptive.is_some() {
            self.maybe_adapt(at);
        }
        if shared.queue_len.load(Ordering::Relaxed) > 0 {
            // The tokens that refill are the waiters' first, even once a reload has turned
            // the queue off (it keeps them), so an arrival asks behind them. (A request no
            // burst holds is refused on its way into the queue.)
            return Fast::Queue;
        }
        match shared.backend.try_acquire(bucket, weight, at) {
            Ok(tokens) => self.admitted(bucket, tokens),
            Err(denied) => self.denied(bucket, weight, at, denied),
        }
    }

    /// Counts an admission with `tokens` left.
    #[inline(always)]
    fn admitted(&self, bucket: BucketId, tokens: TokensLeft) -> Fast {
        self.count_admitted(bucket, tokens);
        Fast::Admitted(tokens)
    }

    /// Counts an admission with `tokens` left in its bucket, and shows them (unkeyed) or
    /// the keys (keyed) in the gauges.
    #[inline(always)]
    pub(super) fn count_admitted(&self, bucket: BucketId, tokens: TokensLeft) {
        let metrics = &self.shared.metrics;
        metrics.admitted.increment(1);
        match bucket {
            None => metrics.tokens.set(tokens),
            Some(_) => self.show_keys(),
        }
    }

    /// Sets the keys gauge: new keys and lazy sweeps change the count (one relaxed load).
    #[inline]
    fn show_keys(&self) {
        self.shared
            .metrics
            .keys
            .set(self.shared.backend.keys() as f64);
    }

    /// The bucket refused `weight` tokens at `at`: look again on a fresh reading (a caller
    /// preempted between its reading and the bucket looks like one from the past), then
    /// queue or reject.
    #[cold]
    #[inline(never)]
    fn denied(&self, bucket: BucketId, weight: u32, at: u64, denied: Denied) -> Fast {
        let denied = match self.reacquire(bucket, weight, at, Err(denied)) {
            Ok(tokens) => return self.admitted(bucket, tokens),
            Err(_) if weight == 0 => {
                // Refused nothing by a bucket holding more than a reload's lower burst: it
                // takes no token, so it goes all the same.
                return self.admitted(bucket, TokensLeft::none());
            }
            Err(denied) => denied,
        };
        if bucket.is_some() {
            self.show_keys();
        }
        if let Some(error) = self.hopeless(weight) {
            return Fast::Rejected(self.reject(error));
        }
        if self.shared.queue_capacity.load(Ordering::Relaxed) > 0 {
            Fast::Queue
        } else {
            Fast::Rejected(self.reject(retry_error(denied)))
        }
    }

    pub(super) fn hopeless(&self, weight: u32) -> Option<Error> {
        let burst = self.shared.backend.quota().burst;
        (weight > burst).then_some(Error::WeightExceedsBurst { weight, burst })
    }

    pub(super) fn reject(&self, error: Error) -> Error {
        tracing::debug!(name = %self.shared.name, reason = error.reason(), "rate limiter rejected a request");
        self.shared.metrics.rejected(&error);
        error
    }

    /// Tries to take `weight` tokens from the unkeyed bucket now, without waiting. While
    /// requests wait in the queue it fails: the tokens that come free are theirs, oldest
    /// first (as .NET's `AttemptAcquire` behind Polly's rate limiter).
    ///
    /// A `weight` of 0 takes nothing and asks whether the bucket is exhausted, as
    /// `AttemptAcquire(0)` does: `Ok` if a token is free and no request waits for it,
    /// else [`Error::RateLimited`] with the time until one would be. It is counted in no
    /// metric.
    pub fn try_acquire(&self, weight: u32) -> Result<(), Error> {
        if weight == 0 {
            return self.probe(None);
        }
        match self.fast(None, weight) {
            Fast::Admitted(_) => Ok(()),
            Fast::Rejected(e) => Err(e),
            Fast::Queue => self.try_behind_queue(None, weight),
        }
    }

    /// Tries to take `weight` tokens from `key`'s bucket now, without waiting.
    /// While requests for that key wait in the queue it fails, and a `weight` of 0 asks
    /// whether a token is free, as [`try_acquire`](Self::try_acquire) does.
    pub fn try_acquire_key<K: Hash>(&self, key: &K, weight: u32) -> Result<(), Error> {
        let bucket = Some(self.hash_key(key));
        if weight == 0 {
            return self.probe(bucket);
        }
        match self.fast(bucket, weight) {
            Fast::Admitted(_) => Ok(()),
            Fast::Rejected(e) => Err(e),
            Fast::Queue => self.try_behind_queue(bucket, weight),
        }
    }

    /// Gives back tokens of a request admitted but never sent.
    pub(crate) fn refund(&self, bucket: BucketId, weight: u32) {
        self.shared.backend.refund(bucket, weight);
        self.shared.queue_wake_all();
    }

    /// Moves the adaptive rate if an interval has passed. Cheap when it has not (one load).
    fn maybe_adapt(&self, at: u64) {
        let Some(adaptive) = &self.shared.adaptive else {
            return;
        };
        if at < adaptive.next_at.load(Ordering::Relaxed) {
            return;
        }
        // Busy: another caller is adapting, or a reload is applying. Poisoned (a panic
        // while reading health): the reader holds only a cursor, so carry on with it rather
        // than never adapting again.
        let mut state = match adaptive.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if at < adaptive.next_at.load(Ordering::Relaxed) {
            return;
        }
        adaptive.next_at.store(
            at.saturating_add(nanos(state.config.interval)),
            Ordering::Relaxed,
        );
        let stats = state.reader.read();
        let current = f64::from_bits(adaptive.rate_bits.load(Ordering::Relaxed));
        if let Some((next, reason)) = adapt::next_rate(current, &stats, &state.config) {
            adaptive.rate_bits.store(next.to_bits(), Ordering::Relaxed);
            self.set_rate(next, at);
            if next < current {
                tracing::warn!(name = %self.shared.name, from = current, to = next, reason = reason.as_str(), "rate limit lowered");
            } else {
                tracing::info!(name = %self.shared.name, from = current, to = next, reason = reason.as_str(), "rate limit raised");
            }
        }
    }

    fn set_rate(&self, per_second: f64, at: u64) {
        let quota = Quota {
            interval_nanos: interval_for(per_second),
            ..self.shared.backend.quota()
        };
        self.shared.backend.set_quota(quota, at);
        self.shared.metrics.rate.set(per_second);
        self.shared.queue_wake_all();
    }

    /// Runs one adaptive step now if its interval has passed (it also runs lazily on calls).
    pub fn adapt(&self) {
        self.maybe_adapt(self.now_nanos());
    }

    /// Applies a new config to the running limiter (hot reload): rate, period, burst, queue
    /// size, max wait, key cap, idle timeout, headers and the adaptive rate's bounds and
    /// reactions. Taken
    /// tokens and waiting requests are kept. With an adaptive rate, the new rate is clamped
    /// to the new bounds, and the next adaptive step comes one new `interval` from now.
    ///
    /// Reconfigurations take turns: one called while another is applying waits for it, so
    /// the limiter ends with the whole of the one applied last, never parts of each.
    pub fn reconfigure(&self, config: &RateLimitConfig) -> Result<(), ConfigError> {
        let shared = &*self.shared;
        let _reload = lock(&shared.reload);
        self.check(config)?;
        let now = self.now_nanos();
        let mut quota = config.quota();
        let mut rate = quota.per_second();
        // Held until the new rate is in place: an adapt step meanwhile would store one
        // worked out from the old bounds.
        let mut adapting = None;
        if let (Some(adaptive), Some(new)) = (&shared.adaptive, &config.adaptive) {
            let mut state = lock(&adaptive.state);
            state.config = new.clone();
            let clamped = rate.clamp(new.min_rate, new.max_rate);
            if clamped != rate {
                rate = clamped;
                quota.interval_nanos = interval_for(rate);
            }
            adaptive.rate_bits.store(rate.to_bits(), Ordering::Relaxed);
            adaptive
                .next_at
                .store(now.saturating_add(nanos(new.interval)), Ordering::Relaxed);
            adapting = Some(state);
        }
        shared.backend.set_quota(quota, now);
        drop(adapting);
        shared.backend.set_max_keys(config.max_keys);
        shared.backend.set_idle_nanos(nanos(config.idle_timeout));
        shared
            .queue_capacity
            .store(config.queue_size, Ordering::Relaxed);
        shared
            .max_wait_nanos
            .store(config.max_wait.map_or(0, nanos), Ordering::Relaxed);
        shared.metrics.rate.set(rate);
        shared.headers.store(config.headers, Ordering::Relaxed);
        *lock(&shared.config) = config.clone();
        tracing::info!(name = %shared.name, rate_per_second = rate, burst = config.effective_burst(), "rate limiter reconfigured");
        shared.queue_wake_all();
        Ok(())
    }

    /// Whether [`reconfigure`](Self::reconfigure) would accept `config`; changes nothing.
    /// Beyond [`validate`](RateLimitConfig::validate): the `clock` and the `key` cannot
    /// change on a running limiter, nor can an adaptive rate be switched on or off (its
    /// values can change).
    pub fn check(&self, config: &RateLimitConfig) -> Result<(), ConfigError> {
        config.validate()?;
        config.clock.check_unchanged(self.clock(), "limiter")?;
        if config.adaptive.is_some() != self.shared.adaptive.is_some() {
            // The health subscription an adaptive rate reads is made with the layer (and a
            // limiter without one publishes nothing to read): say so rather than accept a
            // table that would never apply, or keep adapting to bounds no longer asked for.
            let (value, reason) = if config.adaptive.is_some() {
                (
                    "a table",
                    "an adaptive rate cannot be switched on by a reload: rebuild the layer",
                )
            } else {
                (
                    "(none)",
                    "an adaptive rate cannot be switched off by a reload: rebuild the layer, \
                     or keep the table and give it min_rate = max_rate",
                )
            };
            return Err(ConfigError::new("adaptive", value, reason));
        }
        let running = lock(&self.shared.config).key.clone();
        if config.key != running {
            // The key extractor was built into every service with the layer: a new one
            // cannot reach them. Say so rather than keep keying the old way silently.
            return Err(ConfigError::new(
                "key",
                config
                    .key
                    .as_ref()
                    .map_or("(none)".to_owned(), |k| format!("{k:?}")),
                "the key cannot change on reload: rebuild the layer to key requests differently",
            ));
        }
        Ok(())
    }

    /// Forgets per-key buckets that have been full for the idle timeout; returns how many.
    /// (This also happens lazily as keys are used.)
    pub fn evict_idle(&self) -> usize {
        let removed = self.shared.backend.evict_idle(self.now_nanos());
        self.shared
            .metrics
            .keys
            .set(self.shared.backend.keys() as f64);
        removed
    }

    /// A cheap point-in-time view.
    pub fn snapshot(&self) -> RateLimitSnapshot {
        let shared = &*self.shared;
        let quota = shared.backend.quota();
        let keys = shared.backend.keys();
        shared.metrics.keys.set(keys as f64);
        let rate_per_second = match &shared.adaptive {
            Some(adaptive) => f64::from_bits(adaptive.rate_bits.load(Ordering::Relaxed)),
            None => quota.per_second(),
        };
        RateLimitSnapshot {
            rate_per_second,
            burst: quota.burst,
            tokens: shared.backend.tokens(None, self.now_nanos()),
            queued: shared.queue_len.load(Ordering::Relaxed),
            queue_capacity: shared.queue_capacity.load(Ordering::Relaxed),
            keys,
        }
    }
}

impl Shared {
    pub(super) fn queue_wake_all(&self) {
        if self.queue_len.load(Ordering::Relaxed) > 0 {
            lock(&self.queue).wake_all();
        }
    }
}

/// The token spacing in nanoseconds for a rate per second: rounded up (never faster than
/// asked) unless within float noise of a whole number, at least 1, at most `u64::MAX`.
fn interval_for(per_second: f64) -> u64 {
    let exact = 1e9 / per_second;
    if exact.is_nan() || exact < 1.0 {
        return 1;
    }
    let nearest = exact.round();
    let interval = if (exact - nearest).abs() <= exact * 1e-12 {
        nearest
    } else {
        exact.ceil()
    };
    // `as` saturates at u64::MAX for huge and infinite values.
    interval as u64
}

/// A rejection for a bucket that refused: retry when it will have refilled, but never
/// later than [`RateLimitConfig::MAX_RETRY_AFTER`] from now.
pub(super) fn retry_error(denied: Denied) -> Error {
    Error::RateLimited {
        retry_after: retry_after(denied.retry_after_nanos),
    }
}

/// A wait of `nanos` as a rejection tells it: never later than
/// [`RateLimitConfig::MAX_RETRY_AFTER`] from now.
pub(super) fn retry_after(nanos: u64) -> Duration {
    Duration::from_nanos(nanos).min(RateLimitConfig::MAX_RETRY_AFTER)
}

#[cfg(all(test, not(loom)))]
mod tests;
