//! Unit tests of the config: defaults, bounds, and every bad value naming its field.

use super::*;

#[test]
fn defaults_are_valid() {
    let built = BreakerConfig::builder().build().unwrap();
    assert_eq!(built, BreakerConfig::default());
    built.validate().unwrap();
    assert_eq!(built.window, Window::Count { size: 100 });
}

#[test]
fn bad_values_name_their_field() {
    let cases: Vec<(BreakerConfigBuilder, &str)> = vec![
        (
            BreakerConfig::builder().failure_rate_threshold(1.5),
            "failure_rate_threshold",
        ),
        (
            BreakerConfig::builder().slow_call_rate_threshold(0.0),
            "slow_call_rate_threshold",
        ),
        (
            BreakerConfig::builder().window(Window::Count { size: 0 }),
            "window.size",
        ),
        (
            BreakerConfig::builder().window(Window::Count {
                size: MAX_WINDOW_SIZE + 1,
            }),
            "window.size",
        ),
        (
            BreakerConfig::builder().window(Window::Time {
                duration: Duration::ZERO,
                buckets: 2,
            }),
            "window.duration",
        ),
        (
            BreakerConfig::builder().window(Window::Time {
                duration: Duration::from_secs(1),
                buckets: 0,
            }),
            "window.buckets",
        ),
        (BreakerConfig::builder().minimum_calls(0), "minimum_calls"),
        (
            BreakerConfig::builder().slow_call_duration(Duration::ZERO),
            "slow_call_duration",
        ),
        (
            BreakerConfig::builder().consecutive_failures(0),
            "consecutive_failures",
        ),
        (
            BreakerConfig::builder().wait_duration(Duration::ZERO),
            "wait_duration",
        ),
        (
            BreakerConfig::builder().exponential_backoff(0.5, Duration::from_secs(60)),
            "backoff_multiplier",
        ),
        (
            BreakerConfig::builder().exponential_backoff(f64::NAN, Duration::from_secs(60)),
            "backoff_multiplier",
        ),
        (
            BreakerConfig::builder()
                .wait_duration(Duration::from_secs(5))
                .exponential_backoff(2.0, Duration::from_secs(1)),
            "max_wait_duration",
        ),
        (
            BreakerConfig::builder().permitted_calls_in_half_open(0),
            "permitted_calls_in_half_open",
        ),
        (
            BreakerConfig::builder().permitted_calls_in_half_open(MAX_PROBES + 1),
            "permitted_calls_in_half_open",
        ),
        (
            BreakerConfig::builder().max_wait_in_half_open(Duration::ZERO),
            "max_wait_in_half_open",
        ),
    ];
    for (builder, field) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
    }
}

#[test]
fn a_long_wait_alone_raises_the_default_cap() {
    let ten_minutes = Duration::from_secs(600);
    let config = BreakerConfig::builder()
        .wait_duration(ten_minutes)
        .build()
        .unwrap();
    assert_eq!(config.effective_max_wait(), ten_minutes);
    let config: BreakerConfig = toml::from_str("wait_duration = \"10m\"").unwrap();
    assert_eq!(config.effective_max_wait(), ten_minutes);
    assert_eq!(
        BreakerConfig::default().effective_max_wait(),
        DEFAULT_MAX_WAIT
    );
    // a cap the user wrote below the wait is still an error, naming both settings
    let err = BreakerConfig::builder()
        .wait_duration(ten_minutes)
        .exponential_backoff(2.0, Duration::from_secs(60))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_wait_duration");
    assert!(err.reason().contains("wait_duration (10m)"), "{err}");
}

#[test]
fn absurd_sizes_and_durations_are_refused() {
    let too_long = MAX_BREAKER_DURATION + Duration::from_secs(1);
    let cases: Vec<(BreakerConfigBuilder, &str)> = vec![
        (
            BreakerConfig::builder().window(Window::Time {
                duration: too_long,
                buckets: 10,
            }),
            "window.duration",
        ),
        (
            BreakerConfig::builder().window(Window::Time {
                duration: Duration::from_secs(60),
                buckets: MAX_BUCKETS + 1,
            }),
            "window.buckets",
        ),
        (
            BreakerConfig::builder().window(Window::Count { size: u32::MAX }),
            "window.size",
        ),
        (
            BreakerConfig::builder()
                .window(Window::Time {
                    duration: Duration::from_secs(60),
                    buckets: 10,
                })
                .minimum_calls(u32::MAX),
            "minimum_calls",
        ),
        (
            BreakerConfig::builder().consecutive_failures(u32::MAX),
            "consecutive_failures",
        ),
        (
            BreakerConfig::builder().slow_call_duration(Duration::MAX),
            "slow_call_duration",
        ),
        (
            BreakerConfig::builder().wait_duration(too_long),
            "wait_duration",
        ),
        (
            BreakerConfig::builder().exponential_backoff(2.0, Duration::MAX),
            "max_wait_duration",
        ),
        (
            BreakerConfig::builder().exponential_backoff(1e300, Duration::from_secs(600)),
            "backoff_multiplier",
        ),
        (
            BreakerConfig::builder().max_wait_in_half_open(Duration::MAX),
            "max_wait_in_half_open",
        ),
    ];
    for (builder, field) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert!(err.reason().contains("at most"), "{err}");
    }
    // the bounds themselves are accepted
    BreakerConfig::builder()
        .window(Window::Time {
            duration: MAX_BREAKER_DURATION,
            buckets: MAX_BUCKETS,
        })
        .minimum_calls(MAX_CALLS)
        .consecutive_failures(MAX_CALLS)
        .slow_call_duration(MAX_BREAKER_DURATION)
        .wait_duration(MAX_BREAKER_DURATION)
        .exponential_backoff(MAX_BACKOFF_MULTIPLIER, MAX_BREAKER_DURATION)
        .permitted_calls_in_half_open(MAX_PROBES)
        .max_wait_in_half_open(MAX_BREAKER_DURATION)
        .build()
        .unwrap();
}

#[test]
fn toml_round_trip_and_validation() {
    let text = r#"
        window = { type = "time", duration = "30s", buckets = 6 }
        minimum_calls = 5
        failure_rate_threshold = 0.25
        slow_call_duration = "250ms"
        consecutive_failures = 3
        wait_duration = "2s"
        backoff_multiplier = 2.0
        max_wait_duration = "1m"
        max_wait_in_half_open = "20s"
    "#;
    let config: BreakerConfig = toml::from_str(text).unwrap();
    assert_eq!(
        config.window,
        Window::Time {
            duration: Duration::from_secs(30),
            buckets: 6
        }
    );
    assert_eq!(config.slow_call_duration, Duration::from_millis(250));
    assert_eq!(config.consecutive_failures, Some(3));
    assert_eq!(config.effective_max_wait(), Duration::from_secs(60));
    assert_eq!(config.max_wait_in_half_open, Some(Duration::from_secs(20)));
    assert_eq!(BreakerConfig::default().max_wait_in_half_open, None);
    let again: BreakerConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);

    // bad values parse, and validation names them
    let parsed = |text| toml::from_str::<BreakerConfig>(text).unwrap();
    let err = parsed("failure_rate_threshold = 1.5")
        .validate()
        .unwrap_err();
    assert_eq!(err.field(), "failure_rate_threshold");
    let err = parsed("window = { type = \"count\", size = 0 }")
        .validate()
        .unwrap_err();
    assert_eq!(err.field(), "window.size");
    // unknown fields do not parse
    // the policy name is the layer's (`CircuitBreakerLayer::builder(..).name(..)`), not
    // the config's
    let err = toml::from_str::<BreakerConfig>("name = \"payments\"").unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
    let err = toml::from_str::<BreakerConfig>("treshold = 0.5").unwrap_err();
    assert!(err.to_string().contains("treshold"), "{err}");
    let err = toml::from_str::<BreakerConfig>("window = { type = \"count\", size = 5, x = 1 }")
        .unwrap_err();
    assert!(err.to_string().contains('x'), "{err}");
}

#[test]
fn deadline_expiry_is_not_counted_unless_asked() {
    assert!(!BreakerConfig::default().count_deadline_expiry);
    let config: BreakerConfig = toml::from_str("count_deadline_expiry = true").unwrap();
    assert!(config.count_deadline_expiry);
    config.validate().unwrap();
    let built = BreakerConfig::builder()
        .count_deadline_expiry(true)
        .build()
        .unwrap();
    assert_eq!(built, config);
}
