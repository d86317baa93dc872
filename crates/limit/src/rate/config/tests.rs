//! Unit tests of `config.rs`.

use super::*;

fn field_of(cfg: &RateLimitConfig) -> String {
    cfg.validate().unwrap_err().field().to_owned()
}

#[test]
fn each_bad_field_is_named() {
    let ok = RateLimitConfig::new(10, Duration::from_secs(1));
    assert!(ok.validate().is_ok());
    assert_eq!(
        field_of(&RateLimitConfig {
            rate: 0,
            ..ok.clone()
        }),
        "rate"
    );
    assert_eq!(
        field_of(&RateLimitConfig {
            period: Duration::ZERO,
            ..ok.clone()
        }),
        "period"
    );
    assert_eq!(
        field_of(&RateLimitConfig {
            burst: Some(0),
            ..ok.clone()
        }),
        "burst"
    );
    assert_eq!(
        field_of(&RateLimitConfig {
            max_wait: Some(Duration::from_millis(5)),
            ..ok.clone()
        }),
        "max_wait"
    );
    assert_eq!(
        field_of(&RateLimitConfig {
            queue_size: 4,
            ..ok.clone()
        }),
        "queue_size"
    );
    assert_eq!(
        field_of(&RateLimitConfig {
            max_keys: 0,
            ..ok.clone()
        }),
        "max_keys"
    );
    assert_eq!(
        field_of(&RateLimitConfig {
            rate: 10,
            period: Duration::from_nanos(5),
            ..ok.clone()
        }),
        "rate"
    );
    let err = RateLimitConfig {
        queue_size: 4,
        ..ok.clone()
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("needs max_wait"), "{err}");
}

#[test]
fn extreme_values_are_typed_errors_or_exact() {
    let per_sec = |rate: u32| RateLimitConfig::new(rate, Duration::from_secs(1));
    // 10^9/s is one token per nanosecond exactly: fine, and exact.
    let fastest = per_sec(1_000_000_000);
    fastest.validate().unwrap();
    assert_eq!(fastest.quota().interval_nanos, 1);
    // 6*10^8/s would round to 1 ns (10^9/s) or 2 ns (5*10^8/s): refused, not silently
    // changed. So is anything above one token per nanosecond.
    assert_eq!(field_of(&per_sec(600_000_000)), "rate");
    assert_eq!(field_of(&per_sec(u32::MAX)), "rate");
    // A few million per second is fine, rounded up (never faster than asked).
    let three = per_sec(3_000_000);
    three.validate().unwrap();
    assert_eq!(three.quota().interval_nanos, 334);
    // Spans that would overflow nanosecond arithmetic are refused.
    assert_eq!(
        field_of(&RateLimitConfig::new(
            1,
            Duration::from_secs(200 * 365 * 86_400)
        )),
        "period"
    );
    assert_eq!(field_of(&RateLimitConfig::new(1, Duration::MAX)), "period");
    assert_eq!(
        field_of(&RateLimitConfig {
            burst: Some(u32::MAX),
            ..RateLimitConfig::new(1, Duration::from_secs(86_400))
        }),
        "burst"
    );
    let mut adaptive = AdaptiveConfig::new(1e-12, 10.0);
    assert_eq!(
        field_of(&RateLimitConfig {
            adaptive: Some(adaptive.clone()),
            ..per_sec(5)
        }),
        "adaptive.min_rate"
    );
    adaptive.min_rate = 1.0;
    adaptive.max_rate = 5e8;
    assert_eq!(
        field_of(&RateLimitConfig {
            adaptive: Some(adaptive),
            ..per_sec(5)
        }),
        "adaptive.max_rate"
    );
}

/// Regression (issue 10, item 8): `queue_size = 18446744073709551615` and durations of
/// 500000000000 years passed validation.
#[test]
fn absurd_sizes_and_durations_are_refused_beyond_their_documented_bounds() {
    let queued = RateLimitConfig {
        queue_size: 8,
        max_wait: Some(Duration::from_millis(100)),
        ..RateLimitConfig::new(10, Duration::from_secs(1))
    };
    queued.validate().unwrap();
    let eons = Duration::from_secs(500_000_000_000 * 31_557_600);
    let cases = [
        (
            RateLimitConfig {
                queue_size: usize::MAX,
                ..queued.clone()
            },
            "queue_size",
        ),
        (
            RateLimitConfig {
                queue_size: RateLimitConfig::MAX_QUEUE_SIZE + 1,
                ..queued.clone()
            },
            "queue_size",
        ),
        (
            RateLimitConfig {
                max_wait: Some(eons),
                ..queued.clone()
            },
            "max_wait",
        ),
        (
            RateLimitConfig {
                max_wait: Some(RateLimitConfig::MAX_WAIT + Duration::from_nanos(1)),
                ..queued.clone()
            },
            "max_wait",
        ),
        (
            RateLimitConfig {
                period: eons,
                ..queued.clone()
            },
            "period",
        ),
        (
            RateLimitConfig {
                period: RateLimitConfig::MAX_PERIOD + Duration::from_secs(1),
                ..queued.clone()
            },
            "period",
        ),
        (
            RateLimitConfig {
                idle_timeout: eons,
                ..queued.clone()
            },
            "idle_timeout",
        ),
        (
            RateLimitConfig {
                max_keys: usize::MAX,
                ..queued.clone()
            },
            "max_keys",
        ),
    ];
    for (cfg, field) in cases {
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert!(err.reason().starts_with("must be at most"), "{err}");
    }
    // Every bound itself is accepted.
    RateLimitConfig {
        queue_size: RateLimitConfig::MAX_QUEUE_SIZE,
        max_wait: Some(RateLimitConfig::MAX_WAIT),
        max_keys: RateLimitConfig::MAX_KEYS,
        idle_timeout: RateLimitConfig::MAX_IDLE_TIMEOUT,
        ..RateLimitConfig::new(1, RateLimitConfig::MAX_PERIOD)
    }
    .validate()
    .unwrap();
    // From a file, too.
    let text = "rate = 1\nqueue_size = 18446744073709551615\nmax_wait = \"500000000000y\"";
    let cfg: RateLimitConfig = toml::from_str(text).unwrap();
    assert_eq!(cfg.validate().unwrap_err().field(), "queue_size");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Any rate, period and burst either fail validation with a typed error or give a
    /// bucket that limits at the configured rate (never faster, at most 1% slower) and
    /// admits exactly the burst at once.
    #[test]
    fn any_config_is_refused_or_limits_correctly(
        rate in 1u32..=u32::MAX,
        period_nanos in proptest::prop_oneof![1u64..1_000_000_000, 1u64..=u64::MAX],
        burst in proptest::option::of(1u32..=u32::MAX),
    ) {
        let cfg = RateLimitConfig {
            burst,
            ..RateLimitConfig::new(rate, Duration::from_nanos(period_nanos))
        };
        if cfg.validate().is_err() {
            return Ok(());
        }
        let q = cfg.quota();
        let asked = f64::from(rate) * 1e9 / period_nanos as f64;
        let got = q.per_second();
        proptest::prop_assert!(got <= asked * (1.0 + 1e-12), "{got}/s for {asked}/s");
        proptest::prop_assert!(got >= asked * 0.99, "{got}/s for {asked}/s");
        let bucket = crate::bucket::AtomicBucket::new(q);
        let now = 1_000_000;
        proptest::prop_assert_eq!(bucket.try_acquire(now, q.burst).map(crate::bucket::TokensLeft::get), Ok(0));
        let denied = bucket.try_acquire(now, 1).unwrap_err();
        proptest::prop_assert_eq!(denied.retry_after_nanos, q.interval_nanos);
        proptest::prop_assert_eq!(bucket.try_acquire(now + q.interval_nanos, 1).map(crate::bucket::TokensLeft::get), Ok(0));
    }
}

#[test]
fn unknown_fields_and_bad_durations_are_refused() {
    assert!(toml::from_str::<RateLimitConfig>("rate = 1\nbursts = 2").is_err());
    assert!(toml::from_str::<RateLimitConfig>("rate = 1\nperiod = \"soon\"").is_err());
    let cfg: RateLimitConfig = toml::from_str("rate = 5\nperiod = \"2s\"").unwrap();
    assert_eq!(
        cfg.quota(),
        Quota {
            interval_nanos: 400_000_000,
            burst: 5
        }
    );
}
