//! [`LocalBackend`]: the in-process buckets the rate limiter (and the Redis limiter's local
//! fallback) decide admissions with. `key` is `None` for the shared (unkeyed) bucket, or the
//! hash of a request's key; `now` is nanoseconds since the limiter started.

use crate::bucket::{AtomicBucket, Denied, Quota, TokensLeft};
use crate::keyed::KeyedBuckets;

/// In-process buckets: one atomic GCRA bucket for unkeyed requests (one CAS per admission,
/// no lock, no allocation) and a sharded, capped map of per-key buckets.
#[derive(Debug)]
pub(crate) struct LocalBackend {
    unkeyed: AtomicBucket,
    keyed: KeyedBuckets,
}

impl LocalBackend {
    /// Buckets of shape `quota`, at most `max_keys` keys, a key forgotten after its bucket
    /// has been full for `idle_nanos`.
    pub(crate) fn new(quota: Quota, max_keys: usize, idle_nanos: u64) -> Self {
        LocalBackend {
            unkeyed: AtomicBucket::new(quota),
            keyed: KeyedBuckets::new(max_keys, idle_nanos),
        }
    }

    #[inline]
    pub(crate) fn try_acquire(
        &self,
        key: Option<u64>,
        weight: u32,
        now: u64,
    ) -> Result<TokensLeft, Denied> {
        match key {
            None => self.unkeyed.try_acquire(now, weight),
            Some(key) => self
                .keyed
                .try_acquire(key, now, weight, self.unkeyed.quota()),
        }
    }

    pub(crate) fn refund(&self, key: Option<u64>, weight: u32) {
        match key {
            None => self.unkeyed.refund(weight),
            Some(key) => self.keyed.refund(key, weight, self.unkeyed.quota()),
        }
    }

    pub(crate) fn quota(&self) -> Quota {
        self.unkeyed.quota()
    }

    pub(crate) fn set_quota(&self, quota: Quota, now: u64) {
        let old = self.unkeyed.quota().interval_nanos;
        self.unkeyed.set_quota(quota, now);
        // the keys' buckets keep what they took too (a walk of every key: a reload or an
        // adaptive step, not an admission)
        self.keyed.rescale(old, quota.interval_nanos.max(1), now);
    }

    pub(crate) fn tokens(&self, key: Option<u64>, now: u64) -> u64 {
        match key {
            None => self.unkeyed.tokens(now),
            Some(key) => self.keyed.tokens(key, now, self.unkeyed.quota()),
        }
    }

    pub(crate) fn keys(&self) -> usize {
        self.keyed.len()
    }

    pub(crate) fn set_max_keys(&self, max_keys: usize) {
        self.keyed.set_max_keys(max_keys);
    }

    pub(crate) fn set_idle_nanos(&self, idle_nanos: u64) {
        self.keyed.set_idle_nanos(idle_nanos);
    }

    pub(crate) fn evict_idle(&self, now: u64) -> usize {
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
