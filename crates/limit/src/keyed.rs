//! Per-key buckets with bounded memory and bounded work: a sharded map from key hash to
//! TAT, capped at `max_keys` keys.
//!
//! # What is kept
//!
//! A key is its hash (from the limiter's randomly keyed hasher), never the key itself, so a
//! key costs the same whatever its length: one table slot (two `u64`s, the table at most
//! 7/8 full) and one place in its shard's filing order (two `u64`s), about 35-70 bytes per
//! tracked key in all. A key whose bucket is full again (its TAT is not in the future)
//! holds no rate state: it is the only kind of key ever dropped (what dropping it loses is
//! that the key was seen: see the cap below). A limited key is never forgotten, so minting
//! fresh keys cannot reset one.
//!
//! # Work per admission
//!
//! A tracked key costs one lookup under its shard's lock. A new key also looks at no more
//! than [`PROBES`] keys at the front of its shard's filing order (oldest filing first;
//! a key that must stay is filed again at the back), and, at the cap, when its shard holds
//! well under its share of the cap (the cap was lowered far below what the map was built
//! for), at no more than [`PROBES`] more in the other shards (from the next one in turn,
//! each under its own lock, one at a time). Below the cap it drops the keys it finds idle
//! for the idle timeout; at the cap, the first key it finds full that never came back (or
//! idle), whose slot it then takes. Nothing on the admit path walks a whole shard:
//! [`KeyedBuckets::evict_idle`] does, but only when called.
//!
//! # New keys at the cap: the overflow bucket
//!
//! Below the cap a new key gets a bucket of its own at once, as in governor's keyed
//! limiter. The cap is reached when keys arrive faster than the table forgets idle ones:
//! more clients than it was sized for, or one client minting keys to dodge its limit. From
//! there a key the table has not seen is remembered (in the slot of a full key seen only
//! once, or of an idle one: keys that came back stay until they are idle, so one-off keys
//! churn among themselves), but its first request draws from one overflow bucket, of the
//! same shape as a key's bucket, shared by every key seen for the first time; from its
//! second request on, it has its own bucket. When no slot can be freed (the keys looked
//! at are all limited, or came back and are not idle), the request draws from the overflow
//! bucket and the key is not remembered.
//!
//! The overflow bucket is the default bucket of Envoy's local rate limit (requests matching
//! no descriptor share it). Why first requests at the cap share it:
//! - handing each unseen key a fresh bucket (what this map did before) lets a client that
//!   mints keys through at its own rate whatever the per-key limit, and its fresh keys
//!   churn the table, so the well-behaved clients' keys are forgotten too;
//! - refusing every unseen key would lock out new clients until some tracked bucket
//!   refills, so a flood of fresh keys would deny service to everyone new;
//! - a client that comes back is told apart from a minted key by coming back: it loses at
//!   most its first request to the flood, and once back it keeps its slot until idle.
//!
//! With the overflow bucket, a key minted per request gets one key's rate between all of
//! them, tracked keys keep their state, and a limited key is never dropped. A client that
//! mints keys and reuses each one gets a bucket per key it manages to have remembered, up
//! to `max_keys` in all: key on something a client cannot mint, or add an unkeyed limit. A
//! refund to a request that drew from the overflow bucket is dropped (the overflow bucket
//! keeps the token): it errs on the strict side.

mod shard;
mod table;

#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
use std::sync::PoisonError;
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

use tower_prism_core::sync::{AtomicU64, AtomicUsize, Ordering};

use crate::bucket::{self, AtomicBucket, Denied, Quota, TokensLeft};
use shard::{Evict, Shard};

/// Shards of a large map: enough that two cores rarely wait for one another.
const MAX_SHARDS: usize = 16;

/// Keys a shard holds at the cap, at least, when there is more than one: so that every
/// shard, filled by uniformly hashed keys, looks like every other, and a new key finds a
/// full key in its own shard about as often as anywhere.
const KEYS_PER_SHARD: usize = 512;

/// Keys a new key looks at in one shard: enough that a front of limited keys rarely hides
/// a full one for long (each look files a limited key at the back), few enough to keep a
/// new key's cost within a small constant of a tracked key's.
pub(crate) const PROBES: usize = 4;

/// The most keys one admission looks at (its own shard, then others at the cap).
#[cfg(all(test, not(loom)))]
pub(crate) const MAX_EXAMINED: usize = 2 * PROBES;

/// Where a new key's slot came from.
enum Room {
    /// A free slot below the cap: the key's first request draws from its own bucket.
    BelowCap,
    /// A slot at the cap, freed by dropping a key: the key is remembered, but its first
    /// request draws from the overflow bucket.
    AtCap,
    /// No slot: the request draws from the overflow bucket and the key is not remembered.
    None,
}

/// Buckets by key hash, capped at `max_keys`, with an overflow bucket for keys beyond.
pub(crate) struct KeyedBuckets {
    shards: Box<[Mutex<Shard>]>,
    /// Keys tracked in all shards; never raised past `max_keys`.
    count: AtomicUsize,
    max_keys: AtomicUsize,
    /// How long a full bucket is kept; a reload can change it.
    idle_nanos: AtomicU64,
    /// The bucket shared by keys the map has no room for.
    overflow: AtomicBucket,
    /// The next shard a new key at the cap looks at besides its own.
    next_shard: AtomicUsize,
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

/// A power of two, at most [`MAX_SHARDS`], with at least [`KEYS_PER_SHARD`] keys each at
/// the cap (one shard below that). Fixed when the limiter is built: a cap lowered far
/// below it later leaves shards with few keys, and new keys then look for full keys in
/// other shards too.
fn shard_count(max_keys: usize) -> usize {
    match max_keys / KEYS_PER_SHARD {
        0 => 1,
        n => (1 << n.ilog2()).min(MAX_SHARDS),
    }
}

/// A key hash as the map keeps it: with its low bit set. Hash 0 marks an empty table slot,
/// and a key's place in the filing order notes in the low bit whether the key came back
/// (16 bytes a filing, not 24). Two hashes that differ only in the low bit share a bucket:
/// one pair in 2^63.
fn tracked(key: u64) -> u64 {
    key | 1
}

/// `quota` as a bucket takes it: a spacing and a burst of at least 1 (as the unkeyed
/// bucket's).
fn shape(quota: Quota) -> Quota {
    Quota {
        interval_nanos: quota.interval_nanos.max(1),
        burst: quota.burst.max(1),
    }
}

/// One GCRA step on a tracked key's TAT.
fn take(tat: &mut u64, now: u64, weight: u32, quota: Quota) -> Result<TokensLeft, Denied> {
    *tat = bucket::step(*tat, now, weight, quota)?;
    Ok(TokensLeft::new(*tat, now, quota))
}

impl KeyedBuckets {
    pub(crate) fn new(quota: Quota, max_keys: usize, idle_nanos: u64) -> Self {
        KeyedBuckets {
            shards: (0..shard_count(max_keys))
                .map(|_| Mutex::new(Shard::new(shape(quota))))
                .collect(),
            count: AtomicUsize::new(0),
            max_keys: AtomicUsize::new(max_keys.max(1)),
            idle_nanos: AtomicU64::new(idle_nanos.max(1)),
            overflow: AtomicBucket::new(quota),
            next_shard: AtomicUsize::new(0),
        }
    }

    fn shard_index(&self, key: u64) -> usize {
        // The top bits: the table picks slots by all of them (Fibonacci hashing).
        (key >> 60) as usize & (self.shards.len() - 1)
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_keys(&self, max_keys: usize) {
        self.max_keys.store(max_keys.max(1), Ordering::Relaxed);
    }

    pub(crate) fn set_idle_nanos(&self, idle_nanos: u64) {
        self.idle_nanos.store(idle_nanos.max(1), Ordering::Relaxed);
    }

    /// The time before which a full bucket has been idle long enough to go, at `now`.
    fn idle_by(&self, now: u64) -> Option<u64> {
        now.checked_sub(self.idle_nanos.load(Ordering::Relaxed))
    }

    /// Takes `weight` tokens from `key`'s bucket at `now` (from the overflow bucket if the
    /// key has no slot and none can be freed); returns the whole tokens left.
    pub(crate) fn try_acquire(
        &self,
        key: u64,
        now: u64,
        weight: u32,
    ) -> Result<TokensLeft, Denied> {
        let key = tracked(key);
        let own = self.shard_index(key);
        let mut shard = lock(&self.shards[own]);
        let quota = shard.quota;
        if let Some(tat) = shard.tat_mut(key) {
            return take(tat, now, weight, quota);
        }
        // A new key: its bucket starts full.
        let new_tat = bucket::step(0, now, weight, quota)?;
        if new_tat <= now {
            // Still full (a free request): nothing worth remembering.
            return Ok(TokensLeft::new(new_tat, now, quota));
        }
        match self.make_room(&mut shard, now) {
            Room::BelowCap => {
                shard.track(key, new_tat);
                return Ok(TokensLeft::new(new_tat, now, quota));
            }
            Room::AtCap => {
                shard.track(key, now);
                drop(shard);
                return self.overflow.try_acquire(now, weight);
            }
            Room::None => {}
        }
        // Another shard is worth a look only if this one holds well under its share of the
        // cap: after the cap was lowered far below what the map was built for. Shards
        // filled by uniformly hashed keys look alike, and the look costs a lock.
        let light = shard.len().saturating_mul(2 * self.shards.len())
            < self.max_keys.load(Ordering::Relaxed);
        drop(shard);
        if light && self.free_elsewhere(own, now) {
            let mut shard = lock(&self.shards[own]);
            let quota = shard.quota;
            if let Some(tat) = shard.tat_mut(key) {
                // Tracked by a racing request meanwhile: the slot freed is not needed.
                self.release(1);
                return take(tat, now, weight, quota);
            }
            shard.track(key, now);
        }
        self.overflow.try_acquire(now, weight)
    }

    /// Drops what may go from the front of `shard` (idle keys below the cap; at it, full
    /// keys that never came back, and idle ones) and reserves a slot for a new key.
    fn make_room(&self, shard: &mut Shard, now: u64) -> Room {
        let max = self.max_keys.load(Ordering::Relaxed);
        let count = self.len();
        if count < max {
            let dropped = match self.idle_by(now) {
                Some(idle_by) => shard.drop_front(Evict::Idle { idle_by }, PROBES, PROBES),
                None => 0,
            };
            if dropped == 0 {
                return if self.reserve() {
                    Room::BelowCap
                } else {
                    Room::None
                };
            }
            // The new key takes one of the slots just freed (the count does not grow by
            // it): one atomic update at most instead of two.
            self.release(dropped - 1);
            return Room::BelowCap;
        }
        // Two when the cap was lowered below the count, so that it comes down.
        let want = if count > max { 2 } else { 1 };
        let dropped = shard.drop_front(self.at_cap(now), PROBES, want);
        if dropped == 1 && count == max {
            return Room::AtCap;
        }
        self.release(dropped);
        if self.reserve() {
            Room::AtCap
        } else {
            Room::None
        }
    }

    /// Looks for a key that may go at the cap in the other shards, starting at
    /// the next one in turn, one lock at a time, looking at no more than [`PROBES`] keys in
    /// all (an empty shard costs only its lock); returns whether one was dropped, its slot
    /// then reserved for the caller (the count never dips, so no racing key takes the slot
    /// as one below the cap).
    fn free_elsewhere(&self, own: usize, now: u64) -> bool {
        let shards = self.shards.len();
        let start = self.next_shard.fetch_add(1, Ordering::Relaxed);
        let mut budget = PROBES;
        for step in 0..shards {
            let index = start.wrapping_add(step) % shards;
            if index == own {
                continue;
            }
            let mut shard = lock(&self.shards[index]);
            let looked = shard.len().min(budget);
            let dropped = shard.drop_front(self.at_cap(now), looked, 1);
            drop(shard);
            if dropped > 0 {
                self.release(dropped - 1);
                return true;
            }
            budget -= looked;
            if budget == 0 {
                break;
            }
        }
        false
    }

    /// What may go at the cap at `now`.
    fn at_cap(&self, now: u64) -> Evict {
        Evict::AtCap {
            now,
            idle_by: self.idle_by(now),
        }
    }

    /// Counts a new key in, if the cap allows.
    fn reserve(&self) -> bool {
        let max = self.max_keys.load(Ordering::Relaxed);
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                (count < max).then_some(count + 1)
            })
            .is_ok()
    }

    fn release(&self, dropped: usize) {
        if dropped > 0 {
            self.count.fetch_sub(dropped, Ordering::Relaxed);
        }
    }

    /// Gives back tokens to `key`'s bucket (a request admitted but never sent). Dropped
    /// for an untracked key: its bucket is full, or it drew from the overflow bucket.
    pub(crate) fn refund(&self, key: u64, weight: u32) {
        let key = tracked(key);
        let mut shard = lock(&self.shards[self.shard_index(key)]);
        let cost = shard.quota.interval_nanos.saturating_mul(u64::from(weight));
        if let Some(tat) = shard.tat_mut(key) {
            *tat = tat.saturating_sub(cost);
        }
    }

    /// Whole tokens free in `key`'s bucket at `now` (for an untracked key at the cap, in
    /// the overflow bucket it would most likely draw from).
    pub(crate) fn tokens(&self, key: u64, now: u64) -> u64 {
        let key = tracked(key);
        let shard = lock(&self.shards[self.shard_index(key)]);
        let (tat, quota) = (shard.tat(key), shard.quota);
        drop(shard);
        match tat {
            Some(tat) => bucket::tokens_at(tat, now, quota),
            None if self.len() >= self.max_keys.load(Ordering::Relaxed) => {
                self.overflow.tokens(now)
            }
            None => bucket::tokens_at(0, now, quota),
        }
    }

    /// Changes the shape of every key's bucket, and of the overflow bucket, at `now`, as
    /// the unkeyed bucket's reconfiguration does: the tokens taken stay taken, refilling
    /// at the new rate. Each shard's TATs are rescaled and its shape changed in one
    /// critical section, so that no admission sees a bucket in one scale and the spacing
    /// of the other. Walks every shard (one lock at a time): for a reload or an adaptive
    /// step, not for the admit path.
    pub(crate) fn set_quota(&self, quota: Quota, now: u64) {
        let quota = shape(quota);
        let new = quota.interval_nanos;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let old = shard.quota.interval_nanos;
            if old != new {
                shard.map_tats(|tat| bucket::rescaled(tat, now, old, new));
            }
            shard.quota = quota;
        }
        self.overflow.set_quota(quota, now);
    }

    /// Drops every key idle for the configured idle timeout; returns how many went. Walks
    /// every shard (one lock at a time): for an explicit sweep, not for the admit path.
    pub(crate) fn evict_idle(&self, now: u64) -> usize {
        let Some(idle_by) = self.idle_by(now) else {
            return 0;
        };
        let mut total = 0;
        for shard in self.shards.iter() {
            let dropped = lock(shard).drop_all(idle_by);
            self.release(dropped);
            total += dropped;
        }
        total
    }

    /// The shape of every shard's buckets, then of the overflow bucket: for the tests that
    /// check a reload reached them all.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn shapes(&self) -> Vec<Quota> {
        let mut shapes: Vec<Quota> = self.shards.iter().map(|s| lock(s).quota).collect();
        shapes.push(self.overflow.quota());
        shapes
    }

    /// Holds the last shard's lock until the guard is dropped: for the tests that stop a
    /// reload halfway through its walk.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn hold_last_shard(&self) -> impl Sized + '_ {
        lock(&self.shards[self.shards.len() - 1])
    }

    /// Keys looked at so far by new keys making room, in every shard.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn examined(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).examined).sum()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(loom, test))]
mod loom_tests;
