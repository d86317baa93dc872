//! The keyed limiter at its key cap (issue 10, item 5): a flood of fresh keys never resets
//! a limited key, the map never holds more than `max_keys`, fresh keys beyond a cap of
//! limited keys share one overflow bucket, and a key costs the same whatever its length.

use std::time::Duration;

use tower_prism_limit::rate::{RateLimitConfig, RateLimitLayer, RateLimiter};
use tower_prism_limit::Error;

/// `per_second` tokens a second, a burst of `burst`, at most `max_keys` keys.
fn limiter(per_second: u32, burst: u32, max_keys: usize) -> RateLimiter {
    RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(per_second)
            .period(Duration::from_secs(1))
            .burst(burst)
            .max_keys(max_keys)
            .build()
            .unwrap(),
    )
    .unwrap()
    .handle()
    .clone()
}

fn retry_after(result: Result<(), Error>) -> Duration {
    match result {
        Err(Error::RateLimited { retry_after }) => retry_after,
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

/// Regression: at the cap the key closest to full was evicted even when still limited, so
/// a client minting fresh keys got its own bucket back, full.
#[tokio::test(start_paused = true)]
async fn a_limited_key_is_never_reset_by_a_flood_of_fresh_keys() {
    let limiter = limiter(1, 1, 100);
    limiter.try_acquire_key(&"victim", 1).unwrap();
    for n in 0..10_000u32 {
        let _ = limiter.try_acquire_key(&n, 1);
    }
    let wait = retry_after(limiter.try_acquire_key(&"victim", 1));
    assert!(wait > Duration::from_millis(900), "{wait:?}");
    tokio::time::advance(Duration::from_secs(1)).await;
    limiter.try_acquire_key(&"victim", 1).unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_map_never_tracks_more_than_max_keys() {
    let limiter = limiter(100, 2, 64);
    for round in 0..50u32 {
        for n in 0..200u32 {
            let _ = limiter.try_acquire_key(&(round, n), 1 + n % 2);
            assert!(
                limiter.snapshot().keys <= 64,
                "{} keys",
                limiter.snapshot().keys
            );
        }
        // Some of the tracked buckets refill, some do not.
        tokio::time::advance(Duration::from_millis(7)).await;
    }
    assert_eq!(limiter.snapshot().keys, 64, "the map is used up to its cap");
}

/// The documented choice: when every tracked key is still limited, fresh keys draw from
/// one overflow bucket of a key's shape, shared by every untracked key.
#[tokio::test(start_paused = true)]
async fn fresh_keys_at_a_cap_of_limited_keys_share_the_overflow_bucket() {
    let limiter = limiter(10, 3, 8);
    for n in 0..8u32 {
        limiter.try_acquire_key(&n, 3).unwrap();
    }
    // Three tokens between all the fresh keys, not three each.
    for fresh in 100..103u32 {
        limiter.try_acquire_key(&fresh, 1).unwrap();
    }
    for fresh in 103..200u32 {
        let wait = retry_after(limiter.try_acquire_key(&fresh, 1));
        assert_eq!(wait, Duration::from_millis(100));
    }
    assert_eq!(limiter.snapshot().keys, 8);
    // The overflow bucket refills like any other.
    tokio::time::advance(Duration::from_millis(100)).await;
    limiter.try_acquire_key(&"late", 1).unwrap();
    retry_after(limiter.try_acquire_key(&"later", 1));
}

#[tokio::test(start_paused = true)]
async fn a_full_key_gives_its_slot_to_a_fresh_key_whose_first_request_shares_the_overflow() {
    let limiter = limiter(10, 2, 8);
    for n in 0..8u32 {
        limiter.try_acquire_key(&n, 2).unwrap();
    }
    // 200 ms later every tracked bucket is full again and unused since: fresh keys take
    // their slots, but at the cap a key's first request draws from the overflow bucket
    // (two tokens between them all): a key minted per request gets nothing more.
    tokio::time::advance(Duration::from_millis(200)).await;
    limiter.try_acquire_key(&100u32, 2).unwrap();
    for fresh in 101..108u32 {
        retry_after(limiter.try_acquire_key(&fresh, 2));
    }
    assert_eq!(limiter.snapshot().keys, 8);
    // Remembered, each fresh key that comes back has a bucket of its own (two tokens each).
    for fresh in 100..108u32 {
        limiter.try_acquire_key(&fresh, 2).unwrap();
    }
    retry_after(limiter.try_acquire_key(&100u32, 1));
    // The keys in use keep their slots; a forgotten key draws from the overflow bucket.
    tokio::time::advance(Duration::from_millis(200)).await;
    limiter.try_acquire_key(&0u32, 2).unwrap();
    retry_after(limiter.try_acquire_key(&1u32, 1));
    for fresh in 100..108u32 {
        limiter.try_acquire_key(&fresh, 2).unwrap();
    }
}

/// A key is kept as its hash: a megabyte-long key is one map entry, limited like any
/// other, and distinct from another megabyte-long key that differs in its last byte.
#[tokio::test(start_paused = true)]
async fn a_megabyte_long_key_is_one_entry() {
    let limiter = limiter(1, 1, 16);
    let long = "k".repeat(1 << 20);
    let mut other = long.clone();
    other.replace_range(other.len() - 1.., "j");
    limiter.try_acquire_key(&long, 1).unwrap();
    retry_after(limiter.try_acquire_key(&long, 1));
    limiter.try_acquire_key(&other, 1).unwrap();
    assert_eq!(limiter.snapshot().keys, 2);
}
