//! Where admission decisions are made: the [`Backend`] seam.
//!
//! The limiter asks its backend for tokens; the service, the queue, metrics and adaptivity
//! sit above it and do not care where the bucket lives. [`LocalBackend`] keeps the buckets
//! in this process (one lock-free atomic bucket, plus bounded per-key buckets). A
//! distributed backend (e.g. GCRA in a Redis script with local pre-allotment) can implement
//! the same trait, answering from its local allotment and refilling it in the background.

use std::fmt;

use crate::bucket::{AtomicBucket, Denied, Quota};
use crate::keyed::KeyedBuckets;

/// A store of token buckets. `key` is `None` for the shared (unkeyed) bucket, or the hash
/// of a request's key; `now` is nanoseconds since the limiter started.
///
/// Implementations must be cheap and must not block: `try_acquire` sits on every request's
/// path.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Takes `weight` tokens, returning the whole tokens left, or how long until they fit.
    fn try_acquire(&self, key: Option<u64>, weight: u32, now: u64) -> Result<u64, Denied>;
    /// Gives back tokens taken by a request that was never sent.
    fn refund(&self, key: Option<u64>, weight: u32);
    /// The bucket shape in effect.
    fn quota(&self) -> Quota;
    /// Changes the bucket shape at `now` (hot reload, adaptive rate), keeping the tokens
    /// already taken.
    fn set_quota(&self, quota: Quota, now: u64);
    /// Whole tokens free in a bucket at `now`.
    fn tokens(&self, key: Option<u64>, now: u64) -> u64;
    /// Keys tracked now.
    fn keys(&self) -> usize;
    /// Changes the key cap.
    fn set_max_keys(&self, max_keys: usize);
    /// Forgets idle keys; returns how many went.
    fn evict_idle(&self, now: u64) -> usize;
}

/// In-process buckets: one atomic GCRA bucket for unkeyed requests (one CAS per admission,
/// no lock, no allocation) and a sharded, capped map of per-key buckets.
#[derive(Debug)]
pub struct LocalBackend {
    unkeyed: AtomicBucket,
    keyed: KeyedBuckets,
}

impl LocalBackend {
    /// Buckets of shape `quota`, at most `max_keys` keys, a key forgotten after its bucket
    /// has been full for `idle_nanos`.
    pub fn new(quota: Quota, max_keys: usize, idle_nanos: u64) -> Self {
        LocalBackend {
            unkeyed: AtomicBucket::new(quota),
            keyed: KeyedBuckets::new(max_keys, idle_nanos.max(1)),
        }
    }
}

impl Backend for LocalBackend {
    #[inline]
    fn try_acquire(&self, key: Option<u64>, weight: u32, now: u64) -> Result<u64, Denied> {
        match key {
            None => self.unkeyed.try_acquire(now, weight),
            Some(key) => self
                .keyed
                .try_acquire(key, now, weight, self.unkeyed.quota()),
        }
    }

    fn refund(&self, key: Option<u64>, weight: u32) {
        match key {
            None => self.unkeyed.refund(weight),
            Some(key) => self.keyed.refund(key, weight, self.unkeyed.quota()),
        }
    }

    fn quota(&self) -> Quota {
        self.unkeyed.quota()
    }

    fn set_quota(&self, quota: Quota, now: u64) {
        self.unkeyed.set_quota(quota, now);
    }

    fn tokens(&self, key: Option<u64>, now: u64) -> u64 {
        match key {
            None => self.unkeyed.tokens(now),
            Some(key) => self.keyed.tokens(key, now, self.unkeyed.quota()),
        }
    }

    fn keys(&self) -> usize {
        self.keyed.len()
    }

    fn set_max_keys(&self, max_keys: usize) {
        self.keyed.set_max_keys(max_keys);
    }

    fn evict_idle(&self, now: u64) -> usize {
        self.keyed.evict_idle(now)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn keys_have_their_own_buckets_and_memory_is_capped() {
        let quota = Quota {
            interval_nanos: 100 * MS,
            burst: 1,
        };
        let backend = LocalBackend::new(quota, 4, 1_000 * MS);
        assert!(backend.try_acquire(Some(1), 1, 0).is_ok());
        assert!(backend.try_acquire(Some(1), 1, 0).is_err());
        assert!(
            backend.try_acquire(Some(2), 1, 0).is_ok(),
            "another key is untouched"
        );
        assert!(backend.try_acquire(None, 1, 0).is_ok());
        // A flood of distinct keys never tracks more than the cap.
        for key in 10..1_000u64 {
            let _ = backend.try_acquire(Some(key << 50), 1, MS);
            assert!(backend.keys() <= 4, "{} keys", backend.keys());
        }
    }

    #[test]
    fn idle_keys_are_evicted_losslessly() {
        let quota = Quota {
            interval_nanos: 10 * MS,
            burst: 2,
        };
        let backend = LocalBackend::new(quota, 100, 50 * MS);
        for key in 0..10u64 {
            backend.try_acquire(Some(key << 60 | key), 2, 0).unwrap();
        }
        assert_eq!(backend.keys(), 10);
        assert_eq!(
            backend.evict_idle(30 * MS),
            0,
            "buckets not yet idle long enough"
        );
        assert_eq!(backend.evict_idle(80 * MS), 10);
        assert_eq!(backend.keys(), 0);
        assert_eq!(
            backend.tokens(Some(3 << 60 | 3), 80 * MS),
            2,
            "a forgotten key is full"
        );
    }
}
