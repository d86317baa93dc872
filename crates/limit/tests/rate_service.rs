//! The rate-limited service under paused time: refill, burst, weights, keys, the cap on
//! `retry_after`, adaptivity and hot reconfiguration. The priority queue is in
//! `rate_queue.rs`.

mod common;

use std::time::Duration;

use common::rate::{error, send, Echo, MS};
use tokio::time::advance;
use tokio_test::{assert_ready_ok, task};
use tower::Service;
use tower_layer::Layer;
use tower_prism_core::{HealthSignal, Outcome};
use tower_prism_limit::rate::{AdaptiveConfig, RateLimitConfig, RateLimitLayer, RateLimiter};
use tower_prism_limit::Error;

fn limiter(rate: u32, period: Duration, burst: u32) -> RateLimitLayer {
    RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(rate)
            .period(period)
            .burst(burst)
            .build()
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn burst_then_one_token_per_interval() {
    let layer = limiter(10, Duration::from_secs(1), 3);
    let mut svc = layer.layer(Echo::new());
    for i in 0..3 {
        assert_eq!(send(&mut svc, i).await.unwrap(), i);
    }
    let err = error(send(&mut svc, 3).await);
    assert_eq!(
        err,
        Error::RateLimited {
            retry_after: 100 * MS
        }
    );
    // poll_ready still says "ready": rejections come from the future.
    assert_ready_ok!(task::spawn(()).enter(|cx, _| Service::<u32>::poll_ready(&mut svc, cx)));
    advance(99 * MS).await;
    assert!(matches!(
        error(send(&mut svc, 4).await),
        Error::RateLimited { .. }
    ));
    advance(MS).await;
    assert_eq!(send(&mut svc, 5).await.unwrap(), 5);
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        layer.handle().snapshot().tokens,
        3,
        "never more than the burst"
    );
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_of_one_layer_share_the_bucket() {
    let layer = limiter(1, Duration::from_secs(1), 2);
    let mut a = layer.layer(Echo::new());
    let mut b = a.clone();
    let mut c = layer.layer(Echo::new());
    send(&mut a, 1).await.unwrap();
    send(&mut b, 2).await.unwrap();
    assert!(send(&mut c, 3).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn weights_charge_tokens_and_oversized_requests_fail_clearly() {
    let layer = limiter(10, Duration::from_secs(1), 4).weight_fn(|n: &u32| *n);
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, 3).await.unwrap();
    assert_eq!(layer.handle().snapshot().tokens, 1);
    assert_eq!(
        error(send(&mut svc, 2).await),
        Error::RateLimited {
            retry_after: 100 * MS
        }
    );
    assert_eq!(
        error(send(&mut svc, 5).await),
        Error::WeightExceedsBurst {
            weight: 5,
            burst: 4
        }
    );
    send(&mut svc, 0).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn keys_get_their_own_buckets_within_the_cap() {
    let layer = RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(1)
            .period(Duration::from_secs(1))
            .burst(1)
            .max_keys(3)
            .idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    )
    .unwrap()
    .key_fn(|req: &(u32, u32)| req.0);
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, (1, 0)).await.unwrap();
    assert!(
        send(&mut svc, (1, 1)).await.is_err(),
        "key 1 spent its token"
    );
    send(&mut svc, (2, 0)).await.unwrap();
    send(&mut svc, (3, 0)).await.unwrap();
    assert_eq!(layer.handle().snapshot().keys, 3);
    // At the cap, with every tracked key limited, fresh keys share one overflow bucket of
    // a key's shape (see keyed.rs), and a flood of them does not reset key 1.
    send(&mut svc, (4, 0)).await.unwrap();
    for key in 5..100 {
        assert!(send(&mut svc, (key, 0)).await.is_err(), "key {key}");
        assert!(layer.handle().snapshot().keys <= 3);
    }
    assert!(
        send(&mut svc, (1, 2)).await.is_err(),
        "key 1 is still limited"
    );
    // After the idle timeout every bucket is full again and forgotten.
    advance(Duration::from_secs(7)).await;
    assert!(layer.handle().evict_idle() > 0);
    assert_eq!(layer.handle().snapshot().keys, 0);
    send(&mut svc, (1, 2)).await.unwrap();
}

/// Regression (issue 10, item 1): at one token a year the rejection said "retry after 366
/// days"; now no `retry_after` is longer than the documented cap.
#[tokio::test(start_paused = true)]
async fn retry_after_never_exceeds_its_documented_cap() {
    let layer = limiter(1, RateLimitConfig::MAX_PERIOD, 1);
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, 0).await.unwrap();
    assert_eq!(
        error(send(&mut svc, 1).await),
        Error::RateLimited {
            retry_after: RateLimitConfig::MAX_RETRY_AFTER
        }
    );
    assert_eq!(
        layer.handle().try_acquire(1),
        Err(Error::RateLimited {
            retry_after: RateLimitConfig::MAX_RETRY_AFTER
        })
    );
    // Below the cap, the real wait is told.
    advance(RateLimitConfig::MAX_PERIOD - 10 * MS).await;
    assert_eq!(
        layer.handle().try_acquire(1),
        Err(Error::RateLimited {
            retry_after: 10 * MS
        })
    );
    // With a queue, the wait behind the waiters ahead is capped too.
    let queued = RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(1)
            .period(RateLimitConfig::MAX_PERIOD)
            .burst(1)
            .queue_size(4)
            .max_wait(RateLimitConfig::MAX_WAIT)
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut svc = queued.layer(Echo::new());
    send(&mut svc, 0).await.unwrap();
    assert_eq!(
        error(send(&mut svc, 1).await),
        Error::RateLimited {
            retry_after: RateLimitConfig::MAX_RETRY_AFTER
        }
    );
    assert_eq!(queued.handle().snapshot().queued, 0);
}

/// `try_acquire(0)` asks whether a token is free without taking one, as .NET's
/// `AttemptAcquire(0)` does: refused, with the time to one token, when the bucket is empty.
/// Weight 0 always fitted, so it said yes to an empty bucket.
#[tokio::test(start_paused = true)]
async fn try_acquire_of_no_tokens_asks_whether_one_is_free() {
    let limiter = limiter(1, Duration::from_secs(60), 1).handle().clone();
    assert_eq!(limiter.try_acquire(0), Ok(()), "a full bucket");
    assert_eq!(limiter.try_acquire(1), Ok(()), "the probe took nothing");
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(
        limiter.try_acquire(0),
        Err(Error::RateLimited {
            retry_after: Duration::from_secs(60)
        })
    );
    assert!(limiter.try_acquire_key(&"client", 0).is_ok());
    limiter.try_acquire_key(&"client", 1).unwrap();
    assert!(limiter.try_acquire_key(&"client", 0).is_err());
    advance(Duration::from_secs(60)).await;
    assert_eq!(limiter.try_acquire(0), Ok(()));
    assert_eq!(limiter.try_acquire_key(&"client", 0), Ok(()));
}

/// A reload changing the rate keeps every key's taken tokens taken, refilling at the new
/// rate, as the unkeyed bucket's: the keys' buckets kept their times in nanoseconds of the
/// old rate, so 1,000 times faster a key that took one token still waited the old 998 ms,
/// and 10 times slower a key that had spent its burst got 9 tokens back at once.
#[tokio::test(start_paused = true)]
async fn a_reload_rescales_every_keys_bucket_as_the_unkeyed_one() {
    let config = |rate: u32, burst: u32| {
        let mut c = RateLimitConfig::new(rate, Duration::from_secs(1));
        c.burst = Some(burst);
        c
    };
    let running = |rate: u32, burst: u32| -> RateLimiter {
        RateLimitLayer::from_config(&config(rate, burst))
            .unwrap()
            .handle()
            .clone()
    };
    let limiter = running(1, 1);
    limiter.try_acquire(1).unwrap();
    limiter.try_acquire_key(&"client", 1).unwrap();
    limiter.reconfigure(&config(1000, 1)).unwrap();
    advance(2 * MS).await;
    assert_eq!(limiter.try_acquire(1), Ok(()));
    assert_eq!(
        limiter.try_acquire_key(&"client", 1),
        Ok(()),
        "refilled in 1 ms"
    );

    let limiter = running(10, 10);
    limiter.try_acquire(10).unwrap();
    limiter.try_acquire_key(&"client", 10).unwrap();
    limiter.reconfigure(&config(1, 10)).unwrap();
    assert!(limiter.try_acquire(1).is_err());
    assert!(
        limiter.try_acquire_key(&"client", 1).is_err(),
        "its burst stays spent"
    );
}

/// A reload's `idle_timeout` applies to the keys already tracked and to those to come.
/// It was accepted and reported by `config()`, but the buckets kept the timeout they were
/// built with: lowered from an hour to a second, no key was forgotten for an hour.
#[tokio::test(start_paused = true)]
async fn a_reload_applies_a_new_idle_timeout() {
    let config = |idle: Duration| {
        RateLimitConfig::builder()
            .rate(10)
            .burst(1)
            .idle_timeout(idle)
            .build()
            .unwrap()
    };
    let limiter = RateLimitLayer::from_config(&config(Duration::from_secs(3600)))
        .unwrap()
        .handle()
        .clone();
    for key in 0..5 {
        limiter.try_acquire_key(&key, 1).unwrap();
    }
    assert_eq!(limiter.snapshot().keys, 5);
    limiter
        .reconfigure(&config(Duration::from_secs(1)))
        .unwrap();
    advance(Duration::from_secs(10)).await;
    assert_eq!(limiter.evict_idle(), 5, "idle for 10 s, past the new 1 s");
    assert_eq!(limiter.snapshot().keys, 0);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_changes_rate_and_burst_of_a_running_limiter() {
    let layer = limiter(10, Duration::from_secs(1), 1);
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, 1).await.unwrap();
    assert!(send(&mut svc, 2).await.is_err());
    let limiter: RateLimiter = layer.handle().clone();
    let cfg = {
        let mut c = RateLimitConfig::new(100, Duration::from_secs(1));
        c.burst = Some(5);
        c
    };
    limiter.reconfigure(&cfg).unwrap();
    let snap = limiter.snapshot();
    assert_eq!(
        (snap.rate_per_second, snap.burst, snap.tokens),
        (100.0, 5, 4)
    );
    for i in 0..4 {
        send(&mut svc, i).await.unwrap();
    }
    assert_eq!(
        error(send(&mut svc, 9).await),
        Error::RateLimited {
            retry_after: 10 * MS
        }
    );
    let bad = RateLimitConfig::new(0, Duration::from_secs(1));
    assert_eq!(limiter.reconfigure(&bad).unwrap_err().field(), "rate");
    assert_eq!(
        limiter.snapshot().rate_per_second,
        100.0,
        "a bad config changes nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn adaptive_rate_follows_downstream_health() {
    let health = HealthSignal::new();
    let mut cfg = AdaptiveConfig::new(10.0, 100.0);
    cfg.interval = Duration::from_secs(1);
    cfg.min_calls = 5;
    cfg.decrease_factor = 0.5;
    cfg.increase_step = 5.0;
    let layer = RateLimitLayer::builder(
        RateLimitConfig::builder()
            .rate(80)
            .period(Duration::from_secs(1))
            .adaptive(cfg)
            .build()
            .unwrap(),
    )
    .health(health.clone())
    .name("adaptive")
    .build()
    .unwrap();
    let limiter = layer.handle().clone();
    let rate = || limiter.snapshot().rate_per_second;
    assert_eq!(rate(), 80.0);
    for _ in 0..10 {
        health.record(Outcome::RETRYABLE, 5 * MS);
    }
    limiter.adapt();
    assert_eq!(rate(), 80.0, "no adjustment before the interval");
    advance(Duration::from_secs(1)).await;
    limiter.adapt();
    assert_eq!(rate(), 40.0, "cut on failures");
    for expected in [20.0, 10.0, 10.0] {
        for _ in 0..10 {
            health.record(Outcome::RETRYABLE, 5 * MS);
        }
        advance(Duration::from_secs(1)).await;
        limiter.try_acquire(1).unwrap(); // adjustments also happen lazily on calls
        assert_eq!(rate(), expected, "cut on failures, down to min_rate");
    }
    for _ in 0..10 {
        health.record(Outcome::Success, 5 * MS);
    }
    advance(Duration::from_secs(1)).await;
    limiter.adapt();
    assert_eq!(rate(), 15.0, "additive increase while healthy");
    // An open circuit holds the rate: the breaker fails calls fast already, and a rate cut
    // now would keep the service slow after the upstream is back.
    health.set_circuit_open(true);
    for _ in 0..3 {
        for _ in 0..10 {
            health.record(Outcome::RETRYABLE, 5 * MS);
        }
        advance(Duration::from_secs(1)).await;
        limiter.adapt();
        assert_eq!(rate(), 15.0, "held while the circuit is open");
    }
    health.set_circuit_open(false);
    for _ in 0..10 {
        health.record(Outcome::Success, 5 * MS);
    }
    advance(Duration::from_secs(1)).await;
    limiter.adapt();
    assert_eq!(rate(), 20.0, "and moves again once it closes");
    let err = RateLimitLayer::from_config(&{
        let mut c = RateLimitConfig::new(1, Duration::from_secs(1));
        c.adaptive = Some(AdaptiveConfig::new(1.0, 2.0));
        c
    })
    .unwrap_err();
    assert_eq!(err.field(), "adaptive");
}

/// A reload applies the adaptive table's new values (its bounds clamp the new rate, its
/// reactions drive the next steps) and refuses to switch the adaptive rate on or off: the
/// health subscription it reads is made with the layer. Both were accepted and ignored.
#[tokio::test(start_paused = true)]
async fn reconfigure_applies_new_adaptive_bounds_and_refuses_switching_adaptive() {
    let health = HealthSignal::new();
    let config = |rate: u32, adaptive: Option<AdaptiveConfig>| {
        let mut c = RateLimitConfig::new(rate, Duration::from_secs(1));
        c.adaptive = adaptive;
        c
    };
    let bounds = |min: f64, max: f64, step: f64| {
        let mut a = AdaptiveConfig::new(min, max);
        a.min_calls = 5;
        a.increase_step = step;
        a
    };
    let layer = RateLimitLayer::builder(config(10, Some(bounds(1.0, 5.0, 1.0))))
        .health(health.clone())
        .build()
        .unwrap();
    let limiter = layer.handle().clone();
    let rate = || limiter.snapshot().rate_per_second;
    assert_eq!(rate(), 5.0, "clamped to max_rate");

    limiter
        .reconfigure(&config(100, Some(bounds(50.0, 200.0, 10.0))))
        .unwrap();
    assert_eq!(rate(), 100.0, "the new rate, inside the new bounds");
    limiter
        .reconfigure(&config(10, Some(bounds(50.0, 200.0, 10.0))))
        .unwrap();
    assert_eq!(rate(), 50.0, "clamped to the new min_rate");
    for _ in 0..10 {
        health.record(Outcome::Success, 5 * MS);
    }
    advance(Duration::from_secs(1)).await;
    limiter.adapt();
    assert_eq!(rate(), 60.0, "a healthy step of the new increase_step");

    let on_off = [
        (config(100, None), "off"),
        (config(100, Some(bounds(1.0, 5.0, 1.0))), "on"),
    ];
    let plain = RateLimitLayer::from_config(&config(100, None)).unwrap();
    for (limiter, (reload, switch)) in [limiter.clone(), plain.handle().clone()].iter().zip(on_off)
    {
        let before = limiter.snapshot().rate_per_second;
        let err = limiter.reconfigure(&reload).unwrap_err();
        assert_eq!(err.field(), "adaptive", "switching {switch}: {err}");
        assert_eq!(
            limiter.snapshot().rate_per_second,
            before,
            "switching {switch}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn builder_errors_name_the_field() {
    let err = RateLimitConfig::builder().rate(0).build().unwrap_err();
    assert_eq!(err.field(), "rate");
    let err = RateLimitConfig::builder()
        .rate(5)
        .period(Duration::from_secs(1))
        .queue_size(0)
        .max_wait(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_wait");
    // A config that skipped validation is checked again by the layer builder.
    let mut unchecked = RateLimitConfig::default();
    unchecked.rate = 0;
    let err = RateLimitLayer::builder(unchecked)
        .name("n")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "rate");
}

/// Two real threads hammer one limiter sized so that everything fits (10^9/s, burst 10^6:
/// a tolerance of only 1 ms). Nothing may be refused: a thread preempted between reading
/// the clock and its CAS must not be taken for a request from the past.
#[test]
fn two_threads_on_a_huge_limit_are_never_refused() {
    let layer = RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(1_000_000_000)
            .period(Duration::from_secs(1))
            .burst(1_000_000)
            .build()
            .unwrap(),
    )
    .unwrap();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let limiter = layer.handle().clone();
            std::thread::spawn(move || {
                (0..200_000)
                    .filter(|_| limiter.try_acquire(1).is_err())
                    .count()
            })
        })
        .collect();
    let refused: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(refused, 0, "refused by a bucket that was never near empty");
}
