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
            keyed: KeyedBuckets::new(quota, max_keys, idle_nanos),
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
            Some(key) => self.keyed.try_acquire(key, now, weight),
        }
    }

    pub(crate) fn refund(&self, key: Option<u64>, weight: u32) {
        match key {
            None => self.unkeyed.refund(weight),
            Some(key) => self.keyed.refund(key, weight),
        }
    }

    pub(crate) fn quota(&self) -> Quota {
        self.unkeyed.quota()
    }

    pub(crate) fn set_quota(&self, quota: Quota, now: u64) {
        self.unkeyed.set_quota(quota, now);
        // the keys' buckets keep what they took too, each shard's rescaled with its shape
        // (a walk of every key: a reload or an adaptive step, not an admission)
        self.keyed.set_quota(quota, now);
    }

    pub(crate) fn tokens(&self, key: Option<u64>, now: u64) -> u64 {
        match key {
            None => self.unkeyed.tokens(now),
            Some(key) => self.keyed.tokens(key, now),
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

    /// The shape of every bucket: the unkeyed one, each shard's, the overflow bucket's.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn shapes(&self) -> Vec<Quota> {
        let mut shapes = vec![self.unkeyed.quota()];
        shapes.extend(self.keyed.shapes());
        shapes
    }

    /// Holds the last shard of the per-key buckets until the guard is dropped.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn hold_last_shard(&self) -> impl Sized + '_ {
        self.keyed.hold_last_shard()
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

#[cfg(all(loom, test))]
mod loom_tests {
    use loom::thread;
    use tower_prism_core::sync::Arc;

    use super::*;
    use crate::bucket::quota;

    const KEY: Option<u64> = Some(1 << 60 | 1);

    /// A reload changing the rate from `old` to `new` races an admission of one token to
    /// a key that took `taken` at the old rate, all at time 0: the admission sees the key's
    /// bucket and its shape both before the change or both after it. Returns whether it
    /// was admitted, and the key's whole tokens at `at`.
    fn rate_change_racing_an_admission(old: Quota, new: Quota, taken: u32, at: u64) -> (bool, u64) {
        let backend = Arc::new(LocalBackend::new(old, 4, 1_000_000));
        backend.try_acquire(KEY, taken, 0).unwrap();
        let other = backend.clone();
        let admission = thread::spawn(move || other.try_acquire(KEY, 1, 0).is_ok());
        backend.set_quota(new, 0);
        let admitted = admission.join().unwrap();
        (admitted, backend.tokens(KEY, at))
    }

    /// The rate drops tenfold while a key's bucket is empty: its request is refused, and
    /// the bucket refills at the new rate. Seeing the new spacing on a bucket not yet
    /// rescaled, it was admitted (a burst the new rate does not allow), and the rescale
    /// then counted that token ten times over.
    #[test]
    fn loom_a_rate_drop_racing_a_keyed_admission_never_mixes_scales() {
        loom::model(|| {
            let old = quota(10, 2);
            let new = quota(100, 2);
            let (admitted, tokens) = rate_change_racing_an_admission(old, new, 2, 200);
            assert!(!admitted, "an empty bucket admitted a request");
            assert_eq!(tokens, 2, "refilled two tokens at the new rate");
        });
    }

    /// The rate rises tenfold while a key has one token left: its request is admitted,
    /// and the bucket refills at the new rate. Mixing the scales, it was refused as if the
    /// key had taken ten tokens, or admitted and charged ten.
    #[test]
    fn loom_a_rate_rise_racing_a_keyed_admission_never_mixes_scales() {
        loom::model(|| {
            let old = quota(100, 2);
            let new = quota(10, 2);
            let (admitted, tokens) = rate_change_racing_an_admission(old, new, 1, 20);
            assert!(admitted, "a request refused with a token left");
            assert_eq!(tokens, 2, "refilled two tokens at the new rate");
        });
    }
}
