//! Unit tests of `limiter.rs`.

use super::*;
use crate::rate::RateLimitLayer;

/// Regression: a panic while the adaptive state's lock was held poisoned it, and
/// `maybe_adapt` took a poisoned lock for a busy one: the rate never adapted again.
#[tokio::test(start_paused = true)]
async fn a_poisoned_health_reader_still_adapts_the_rate() {
    let health = tower_prism_core::HealthSignal::new();
    let mut cfg = AdaptiveConfig::new(10.0, 100.0);
    cfg.interval = Duration::from_secs(1);
    cfg.min_calls = 5;
    cfg.decrease_factor = 0.5;
    let layer = RateLimitLayer::builder(
        RateLimitConfig::builder()
            .rate(80)
            .period(Duration::from_secs(1))
            .adaptive(cfg)
            .build()
            .unwrap(),
    )
    .health(health.clone())
    .build()
    .unwrap();
    let limiter = layer.handle().clone();
    let poisoner = limiter.clone();
    let _ = std::thread::spawn(move || {
        let adaptive = poisoner.shared.adaptive.as_ref().unwrap();
        let _held = adaptive.state.lock().unwrap();
        panic!("a panic while reading health");
    })
    .join();
    assert!(limiter
        .shared
        .adaptive
        .as_ref()
        .unwrap()
        .state
        .is_poisoned());
    for _ in 0..10 {
        health.record(
            tower_prism_core::Outcome::RETRYABLE,
            Duration::from_millis(5),
        );
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    limiter.adapt();
    assert_eq!(limiter.snapshot().rate_per_second, 40.0, "cut on failures");
}

/// Regression: a caller whose clock reading went stale before its CAS (preempted, or
/// a long CAS race) while another caller moved the TAT to a later now was refused by a
/// full bucket. This made the admit-path benchmark fail ("not admitted at once") at
/// 10^9/s with a burst of 10^6, a tolerance of only 1 ms.
#[tokio::test(start_paused = true)]
async fn a_stale_clock_reading_is_not_refused_by_a_full_bucket() {
    let layer = RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(1_000_000_000)
            .period(Duration::from_secs(1))
            .burst(1_000_000)
            .build()
            .unwrap(),
    )
    .unwrap();
    let limiter = layer.handle();
    let stale = Instant::now();
    tokio::time::advance(Duration::from_millis(5)).await;
    // Another caller, with a fresh reading, moves the TAT to now + 1 ns.
    limiter.try_acquire(1).unwrap();
    assert!(
        matches!(
            limiter.fast_at(None, 1, limiter.since_epoch(stale)),
            Fast::Admitted(_)
        ),
        "a reading 5 ms old must not look like a request 5 ms in the past"
    );
    assert_eq!(limiter.snapshot().tokens, 999_998);

    // A real denial still stands, with the retry time of the fresh reading.
    let tight = RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(10)
            .period(Duration::from_secs(1))
            .burst(1)
            .build()
            .unwrap(),
    )
    .unwrap();
    let limiter = tight.handle();
    let stale = Instant::now();
    tokio::time::advance(Duration::from_millis(30)).await;
    limiter.try_acquire(1).unwrap();
    match limiter.fast_at(None, 1, limiter.since_epoch(stale)) {
        Fast::Rejected(Error::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Duration::from_millis(100))
        }
        _ => panic!("the bucket is empty"),
    }
}

#[test]
fn interval_for_rounds_up_but_not_float_noise() {
    assert_eq!(interval_for(1e9), 1);
    assert_eq!(interval_for(1e9 / 3.0), 3, "float noise is not rounded up");
    assert_eq!(interval_for(3.0), 333_333_334, "never faster than asked");
    assert_eq!(interval_for(2e9), 1);
    assert_eq!(interval_for(0.0), u64::MAX, "a zero rate never refills");
    assert_eq!(interval_for(1e-300), u64::MAX);
    assert_eq!(interval_for(f64::NAN), 1);
}

/// Two reloads racing each other leave the limiter in one of the two configurations,
/// whole: the second waits for the first to finish before it changes anything. Each walked
/// the shards of per-key buckets on its own, so a shard kept whichever rate was stored in
/// it last (keys in one shard limited at one rate, keys in another at the other), and the
/// unkeyed bucket, the queue and the reported config each kept the last writer's.
///
/// The first reload is stopped halfway through its walk by holding the last shard's lock;
/// the second then must not touch the unkeyed bucket, which it reshapes first.
#[test]
fn racing_reloads_leave_one_configuration_whole() {
    let config = |rate: u32, queue_size: usize| {
        RateLimitConfig::builder()
            .rate(rate)
            .period(Duration::from_secs(1))
            .queue_size(queue_size)
            .max_wait(Duration::from_millis(u64::from(rate)))
            // 16 shards: a reload walks them one lock at a time.
            .max_keys(16 * 512)
            .build()
            .unwrap()
    };
    let (slow, fast) = (config(100, 4), config(1_000, 8));
    let layer = RateLimitLayer::from_config(&slow).unwrap();
    let limiter = layer.handle().clone();
    let shapes = || limiter.shared.backend.shapes();
    assert_eq!(shapes().len(), 1 + 16 + 1);
    let reload = |config: &RateLimitConfig| {
        let (limiter, config) = (limiter.clone(), config.clone());
        std::thread::spawn(move || limiter.reconfigure(&config).unwrap())
    };
    let unkeyed = || limiter.shared.backend.quota();
    let wait_for = |what: &dyn Fn() -> bool, within: Duration| {
        let start = std::time::Instant::now();
        while !what() {
            if start.elapsed() > within {
                return false;
            }
            std::thread::yield_now();
        }
        true
    };

    let held = limiter.shared.backend.hold_last_shard();
    let first = reload(&fast);
    assert!(
        wait_for(&|| unkeyed() == fast.quota(), Duration::from_secs(10)),
        "the first reload reshapes the unkeyed bucket before the shards"
    );
    let second = reload(&slow);
    // The first is stuck on the last shard: the second must wait for it.
    let interleaved = wait_for(&|| unkeyed() == slow.quota(), Duration::from_millis(200));
    drop(held);
    first.join().unwrap();
    second.join().unwrap();
    assert!(
        !interleaved,
        "the second reload reshaped the unkeyed bucket while the first was halfway through"
    );
    let config = limiter.config();
    assert_eq!(config, slow, "the second reload is the last");
    assert!(
        shapes().iter().all(|shape| *shape == slow.quota()),
        "buckets shaped {:?} under a config of {:?}",
        shapes(),
        slow.quota()
    );
    assert_eq!(limiter.snapshot().queue_capacity, slow.queue_size);
    assert_eq!(
        limiter.shared.max_wait_nanos.load(Ordering::Relaxed),
        nanos(slow.max_wait.unwrap())
    );
}
