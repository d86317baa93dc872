//! Per-key buckets with bounded memory: a sharded map from key hash to TAT.
//!
//! Each key costs one map entry (two `u64`s). A key whose bucket is full again (its TAT is
//! in the past) holds no information, so dropping it is lossless: idle keys are swept out,
//! and when the key cap is reached the sweep runs first. Only if every tracked key is still
//! limited does the cap evict the key closest to full, which may let that key burst again
//! early (the price of bounded memory under a flood of distinct keys).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tower_prism_core::sync::{AtomicUsize, Ordering};

use crate::bucket::{self, Denied, Quota};

const SHARDS: usize = 16;

/// The keys are already hashes (from the limiter's random-keyed hasher): use them as is.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, u64, BuildHasherDefault<PassThrough>>;

#[derive(Default)]
struct Shard {
    tats: Map,
    last_sweep: u64,
}

impl Shard {
    /// Drops every key whose bucket has been full for at least `idle` nanoseconds.
    fn sweep(&mut self, now: u64, idle: u64) -> usize {
        let before = self.tats.len();
        self.tats.retain(|_, tat| tat.saturating_add(idle) > now);
        self.last_sweep = now;
        before - self.tats.len()
    }

    /// Drops the key closest to a full bucket; returns whether one was dropped.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .tats
            .iter()
            .min_by_key(|(_, tat)| **tat)
            .map(|(k, _)| *k);
        victim.is_some_and(|k| self.tats.remove(&k).is_some())
    }
}

/// Buckets by key hash, capped at `max_keys`.
pub(crate) struct KeyedBuckets {
    shards: Box<[Mutex<Shard>]>,
    count: AtomicUsize,
    max_keys: AtomicUsize,
    idle_nanos: u64,
}

impl std::fmt::Debug for KeyedBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedBuckets")
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys.load(Ordering::Relaxed))
            .finish()
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KeyedBuckets {
    pub(crate) fn new(max_keys: usize, idle_nanos: u64) -> Self {
        KeyedBuckets {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            count: AtomicUsize::new(0),
            max_keys: AtomicUsize::new(max_keys.max(1)),
            idle_nanos,
        }
    }

    fn shard_index(&self, key: u64) -> usize {
        (key >> 60) as usize % SHARDS
    }

    fn shard(&self, key: u64) -> &Mutex<Shard> {
        &self.shards[self.shard_index(key)]
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_keys(&self, max_keys: usize) {
        self.max_keys.store(max_keys.max(1), Ordering::Relaxed);
    }

    /// Takes `weight` tokens from `key`'s bucket at `now`; returns the whole tokens left.
    pub(crate) fn try_acquire(
        &self,
        key: u64,
        now: u64,
        weight: u32,
        quota: Quota,
    ) -> Result<u64, Denied> {
        let mut shard = lock(self.shard(key));
        if now.saturating_sub(shard.last_sweep) >= self.idle_nanos {
            let removed = shard.sweep(now, self.idle_nanos);
            self.count.fetch_sub(removed, Ordering::Relaxed);
        }
        if let Some(tat) = shard.tats.get_mut(&key) {
            let new_tat = bucket::step(*tat, now, weight, quota)?;
            *tat = new_tat;
            return Ok(bucket::tokens_at(new_tat, now, quota));
        }
        // A new key: its bucket starts full.
        let new_tat = bucket::step(0, now, weight, quota)?;
        if self.len() >= self.max_keys.load(Ordering::Relaxed) {
            shard = self.make_room(shard, key, now);
        }
        if shard.tats.insert(key, new_tat).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(bucket::tokens_at(new_tat, now, quota))
    }

    /// Frees at least one slot: lossless sweeps first, then the least-limited key. Holds at
    /// most one shard lock at a time.
    fn make_room<'a>(
        &'a self,
        mut own: MutexGuard<'a, Shard>,
        key: u64,
        now: u64,
    ) -> MutexGuard<'a, Shard> {
        let removed = own.sweep(now, 0);
        self.count.fetch_sub(removed, Ordering::Relaxed);
        if self.len() < self.max_keys.load(Ordering::Relaxed) {
            return own;
        }
        if own.evict_one() {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return own;
        }
        drop(own);
        let own_index = self.shard_index(key);
        for (index, shard) in self.shards.iter().enumerate() {
            if index == own_index {
                continue;
            }
            let mut other = lock(shard);
            let removed = other.sweep(now, 0);
            self.count.fetch_sub(removed, Ordering::Relaxed);
            if removed == 0 && other.evict_one() {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
            if self.len() < self.max_keys.load(Ordering::Relaxed) {
                break;
            }
        }
        lock(self.shard(key))
    }

    /// Gives back tokens to `key`'s bucket (a request admitted but never sent).
    pub(crate) fn refund(&self, key: u64, weight: u32, quota: Quota) {
        let mut shard = lock(self.shard(key));
        if let Some(tat) = shard.tats.get_mut(&key) {
            *tat = tat.saturating_sub(quota.interval_nanos.saturating_mul(u64::from(weight)));
        }
    }

    /// Whole tokens free in `key`'s bucket at `now`.
    pub(crate) fn tokens(&self, key: u64, now: u64, quota: Quota) -> u64 {
        let shard = lock(self.shard(key));
        let tat = shard.tats.get(&key).copied().unwrap_or(0);
        bucket::tokens_at(tat, now, quota)
    }

    /// Sweeps every shard of keys idle for the configured idle timeout; returns how many went.
    pub(crate) fn evict_idle(&self, now: u64) -> usize {
        let mut total = 0;
        for shard in self.shards.iter() {
            let removed = lock(shard).sweep(now, self.idle_nanos);
            self.count.fetch_sub(removed, Ordering::Relaxed);
            total += removed;
        }
        total
    }
}
