//! Loom models of the keyed shard map: racing new keys never push the count past the cap,
//! never drop a limited key, and one key raced by two requests is tracked once.

use loom::thread;
use tower_prism_core::sync::Arc;

use super::*;

const QUOTA: Quota = Quota {
    interval_nanos: 10,
    burst: 1,
};
const IDLE: u64 = 1_000_000;

/// A key hash in shard `shard`.
fn key(shard: u64) -> u64 {
    shard << 60 | 1
}

/// A map of 16 shards whose cap is then lowered to one key: new keys must look in other
/// shards for a slot.
fn one_slot_in_sixteen_shards() -> Arc<KeyedBuckets> {
    let buckets = KeyedBuckets::new(QUOTA, MAX_SHARDS * KEYS_PER_SHARD, IDLE);
    assert_eq!(buckets.shards.len(), MAX_SHARDS);
    buckets.set_max_keys(1);
    Arc::new(buckets)
}

fn tracked_in_shards(buckets: &KeyedBuckets) -> usize {
    buckets.shards.iter().map(|s| lock(s).len()).sum()
}

/// Two fresh keys (in shards 1 and 2) admitted at `now` on two threads: how many got in.
fn fresh_keys_race(buckets: &Arc<KeyedBuckets>, now: u64) -> usize {
    let handles: Vec<_> = [1, 2]
        .into_iter()
        .map(|shard| {
            let buckets = buckets.clone();
            thread::spawn(move || buckets.try_acquire(key(shard), now, 1).is_ok())
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|won| *won)
        .count()
}

/// One slot, held by a full key: two fresh keys race for it. At the cap a fresh key's
/// first request draws from the overflow bucket, whichever of them gets the slot: exactly
/// one is admitted (its one token), and the map ends with exactly one key.
#[test]
fn loom_fresh_keys_racing_for_the_last_slot_never_pass_the_cap() {
    loom::model(|| {
        let buckets = one_slot_in_sixteen_shards();
        buckets.try_acquire(key(0), 0, 1).unwrap();
        let wins = fresh_keys_race(&buckets, 20);
        assert_eq!(wins, 1);
        assert_eq!(buckets.len(), 1);
        assert_eq!(tracked_in_shards(&buckets), 1);
    });
}

/// One slot, held by a limited key: two fresh keys racing at the cap share the overflow
/// bucket (one token: exactly one wins) and the limited key keeps its slot and TAT.
#[test]
fn loom_a_limited_key_survives_fresh_keys_racing_at_the_cap() {
    loom::model(|| {
        let buckets = one_slot_in_sixteen_shards();
        buckets.try_acquire(key(0), 5, 1).unwrap();
        let wins = fresh_keys_race(&buckets, 6);
        assert_eq!(wins, 1);
        assert_eq!(lock(&buckets.shards[0]).tat(key(0)), Some(15));
        assert_eq!(buckets.len(), 1);
    });
}

/// Two requests of one new key race: the key is tracked once, and only one of them gets
/// its single token.
#[test]
fn loom_one_new_key_raced_by_two_requests_is_tracked_once() {
    loom::model(|| {
        let buckets = Arc::new(KeyedBuckets::new(QUOTA, 4, IDLE));
        let other = buckets.clone();
        let racer = thread::spawn(move || other.try_acquire(key(3), 0, 1).is_ok());
        let mine = buckets.try_acquire(key(3), 0, 1).is_ok();
        let theirs = racer.join().unwrap();
        assert!(mine ^ theirs, "exactly one of the two gets the token");
        assert_eq!(buckets.len(), 1);
        assert_eq!(tracked_in_shards(&buckets), 1);
    });
}
