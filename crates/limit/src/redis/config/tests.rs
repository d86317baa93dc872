//! Unit tests of `config.rs`.

use super::*;
use tower_prism_core::config::MAX_DURATION;

fn field(cfg: RedisConfig) -> String {
    cfg.validate().unwrap_err().field().to_owned()
}

#[test]
fn each_bad_field_is_named() {
    let ok = RedisConfig::new("redis://127.0.0.1:6379/", 100, Duration::from_secs(1));
    ok.validate().unwrap();
    let with = |f: fn(&mut RedisConfig)| {
        let mut c = ok.clone();
        f(&mut c);
        c
    };
    assert_eq!(field(with(|c| c.url = "http://nope".into())), "url");
    assert_eq!(field(with(|c| c.url = "redis://h:0/".into())), "url");
    assert_eq!(
        field(with(|c| c.url = "redis://h/99999999999".into())),
        "url"
    );
    let cluster = |url: &str| {
        let mut c = ok.clone();
        c.cluster = true;
        c.url = url.into();
        c
    };
    assert_eq!(field(cluster("redis+unix:///tmp/redis.sock")), "url");
    assert_eq!(field(cluster("redis://h:7000/3")), "url");
    cluster("redis://h:7000/").validate().unwrap();
    assert_eq!(
        field(with(|c| c.period = Duration::from_nanos(1))),
        "period"
    );
    assert_eq!(field(with(|c| c.rate = 0)), "rate");
    assert_eq!(field(with(|c| c.rate = 2_000_000)), "rate");
    assert_eq!(field(with(|c| c.period = Duration::ZERO)), "period");
    assert_eq!(field(with(|c| c.period = Duration::MAX)), "period");
    assert_eq!(field(with(|c| c.burst = Some(0))), "burst");
    assert_eq!(field(with(|c| c.prefix = "a{b".into())), "prefix");
    // with a `:`, prefix `rl:users` and limit `login` would share a bucket with prefix
    // `rl`, limit `users`, key `login`
    assert_eq!(field(with(|c| c.prefix = "rl:users".into())), "prefix");
    // Redis refuses `AUTH ""`: the link would stay down for good
    assert_eq!(
        field(with(|c| c.password = Some(String::new()))),
        "password"
    );
    std::env::set_var("TOWER_PRISM_TEST_EMPTY_SECRET", "");
    assert_eq!(
        field(with(
            |c| c.password_env = Some("TOWER_PRISM_TEST_EMPTY_SECRET".into())
        )),
        "password_env"
    );
    assert_eq!(field(with(|c| c.timeout = Duration::ZERO)), "timeout");
    assert_eq!(
        field(with(
            |c| c.failure_policy = FailurePolicy::LocalFallback { instances: 0 }
        )),
        "failure_policy.local_fallback.instances"
    );
    assert_eq!(field(with(|c| c.pre_allot = 0)), "pre_allot");
    assert_eq!(field(with(|c| c.max_keys = 0)), "max_keys");
}

/// Tokens are spaced in whole microseconds, rounded up: 500,001 a second was spaced 1 µs
/// (a million a second admitted), now 2 µs (500,000: 0.0002 % slower); 150,000 a second
/// would be 142,857 (5 % slower, refused, as the local limiter refuses its own); 150,000
/// was spaced 6 µs (11 % over).
#[test]
fn tokens_are_spaced_never_closer_than_the_rate_asks() {
    let at = |rate: u32| RedisConfig::new("redis://127.0.0.1:6379/", rate, Duration::from_secs(1));
    assert_eq!(at(500_001).interval_us(), 2);
    at(500_001).validate().unwrap();
    assert_eq!(at(1_000_000).interval_us(), 1);
    at(1_000_000).validate().unwrap();
    assert_eq!(at(150_000).interval_us(), 7);
    assert_eq!(field(at(150_000)), "rate");
    assert_eq!(field(at(2_000_000)), "rate");
}

/// The script keeps a bucket's time in integer microseconds: a full burst of 320,000 at
/// one token per 366 days overflowed it (and the empty bucket read full). As the local
/// limiter, a burst may take at most 100 years to refill.
#[test]
fn a_burst_refilling_in_over_a_century_is_refused() {
    let mut cfg = RedisConfig::new(
        "redis://127.0.0.1:6379/",
        1,
        Duration::from_secs(366 * 24 * 3600),
    );
    cfg.burst = Some(320_000);
    assert_eq!(field(cfg.clone()), "burst");
    cfg.burst = Some(99);
    cfg.validate().unwrap();
}

#[test]
fn every_size_and_duration_has_an_upper_bound() {
    let ok = RedisConfig::new("redis://127.0.0.1:6379/", 100, Duration::from_secs(1));
    let with = |f: fn(&mut RedisConfig)| {
        let mut c = ok.clone();
        f(&mut c);
        c
    };
    assert_eq!(
        field(with(|c| c.period = MAX_DURATION + Duration::from_secs(1))),
        "period"
    );
    with(|c| c.period = MAX_DURATION).validate().unwrap();
    assert_eq!(
        field(with(
            |c| c.timeout = RedisConfig::MAX_TIMEOUT + Duration::from_millis(1)
        )),
        "timeout"
    );
    with(|c| c.timeout = RedisConfig::MAX_TIMEOUT)
        .validate()
        .unwrap();
    for (name, cfg) in [
        (
            "connect_timeout",
            with(|c| c.connect_timeout = RedisConfig::MAX_RECONNECT_WAIT * 2),
        ),
        (
            "connect_timeout",
            with(|c| c.connect_timeout = Duration::ZERO),
        ),
        (
            "reconnect_backoff_max",
            with(|c| c.reconnect_backoff_max = RedisConfig::MAX_RECONNECT_WAIT * 2),
        ),
        (
            "reconnect_backoff",
            with(|c| c.reconnect_backoff = Duration::ZERO),
        ),
        (
            "reconnect_backoff_max",
            with(|c| c.reconnect_backoff_max = Duration::from_millis(1)),
        ),
        (
            "burst",
            with(|c| c.burst = Some(RedisConfig::MAX_COUNT + 1)),
        ),
        (
            "max_keys",
            with(|c| c.max_keys = RedisConfig::MAX_COUNT as usize + 1),
        ),
        (
            "failure_policy.local_fallback.instances",
            with(|c| {
                c.failure_policy = FailurePolicy::LocalFallback {
                    instances: RedisConfig::MAX_COUNT + 1,
                }
            }),
        ),
        (
            "prefix",
            with(|c| c.prefix = "p".repeat(RedisConfig::MAX_PREFIX_BYTES + 1)),
        ),
        (
            "url",
            with(|c| c.url = format!("redis://h/{}", "x".repeat(RedisConfig::MAX_TEXT_BYTES + 1))),
        ),
        (
            "username",
            with(|c| c.username = Some("x".repeat(RedisConfig::MAX_TEXT_BYTES + 1))),
        ),
        (
            "password",
            with(|c| c.password = Some("x".repeat(RedisConfig::MAX_TEXT_BYTES + 1))),
        ),
        (
            "password_env",
            with(|c| c.password_env = Some("x".repeat(RedisConfig::MAX_TEXT_BYTES + 1))),
        ),
        (
            "tls_ca_file",
            with(|c| c.tls_ca_file = Some("/ca.pem".into())),
        ),
    ] {
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.field(), name, "{err}");
        assert!(err.to_string().len() < 400, "bounded error text: {err}");
    }
    // The default burst of a huge rate is capped at the bound rather than refused.
    let huge = RedisConfig::new("redis://h/", 60_000_000, Duration::from_secs(60));
    assert_eq!(huge.effective_burst(), RedisConfig::MAX_COUNT);
    huge.validate().unwrap();
}

#[test]
fn debug_redacts_the_url_and_hides_the_password() {
    let mut cfg = RedisConfig::new("redis://u:hunter2@h:1/", 1, Duration::from_secs(1));
    cfg.password = Some("swordfish".into());
    let text = format!("{cfg:?}");
    assert!(
        !text.contains("hunter2") && !text.contains("swordfish"),
        "{text}"
    );
    assert!(text.contains("redis://u:***@h:1/"), "{text}");
    let err = with_url("redis://u:hunter2@h:notaport/")
        .validate()
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

fn with_url(url: &str) -> RedisConfig {
    RedisConfig::new(url, 1, Duration::from_secs(1))
}

#[test]
fn serde_reads_policies_and_refuses_unknown_fields() {
    let cfg: RedisConfig = toml::from_str(
        "url = 'redis://h/'\nrate = 5\nfailure_policy = 'fail_open'\ntimeout = '10ms'",
    )
    .unwrap();
    assert_eq!(cfg.failure_policy, FailurePolicy::FailOpen);
    assert_eq!(cfg.timeout, Duration::from_millis(10));
    assert_eq!(cfg.effective_burst(), 5);
    assert!(toml::from_str::<RedisConfig>("url = 'redis://h/'\nrate = 5\nrates = 1").is_err());
    assert!(toml::from_str::<RedisConfig>(
        "url = 'redis://h/'\nrate = 5\nfailure_policy = 'maybe'"
    )
    .is_err());
}
