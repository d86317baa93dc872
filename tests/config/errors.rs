//! Config errors look the same for every stage (`ConfigFileError::Invalid` naming
//! `policy.<name>.<stage>.<field>`), absurd values are refused with a typed error, and no
//! error quotes more than a bounded part of its input, however large the input.

use std::time::Duration;

use tower_prism::{ConfigFileError, ReliabilityConfig};

fn field_of(text: &str) -> String {
    match ReliabilityConfig::from_toml(text) {
        Err(ConfigFileError::Invalid(e)) => e.field().to_owned(),
        other => panic!("expected ConfigFileError::Invalid for {text:?}, got {other:?}"),
    }
}

#[test]
fn every_stage_reports_a_bad_value_as_invalid_with_its_field_path() {
    let cases = [
        (
            "[policy.api.rate_limit]\nrate = 0",
            "policy.api.rate_limit.rate",
        ),
        (
            "[policy.api.concurrency_limit]\ninitial_limit = 0",
            "policy.api.concurrency_limit.initial_limit",
        ),
        (
            "[policy.api.circuit_breaker]\nfailure_rate_threshold = 1.5",
            "policy.api.circuit_breaker.failure_rate_threshold",
        ),
        (
            "[policy.api.circuit_breaker]\nwindow = { type = \"count\", size = 0 }",
            "policy.api.circuit_breaker.window.size",
        ),
        (
            "[policy.api.retry]\nmax_attempts = 0",
            "policy.api.retry.max_attempts",
        ),
        (
            "[policy.api.balance.outlier]\nmax_ejection_percent = 150",
            "policy.api.balance.outlier.max_ejection_percent",
        ),
    ];
    for (text, field) in cases {
        assert_eq!(field_of(text), field, "{text}");
    }
    let err =
        ReliabilityConfig::from_toml("[policy.api.circuit_breaker]\nfailure_rate_threshold = 1.5")
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `policy.api.circuit_breaker.failure_rate_threshold` = 1.5: \
         must be greater than 0 and at most 1"
    );
}

#[test]
fn a_long_breaker_wait_alone_is_accepted_and_a_short_cap_names_both_settings() {
    let config =
        ReliabilityConfig::from_toml("[policy.api.circuit_breaker]\nwait_duration = \"10m\"")
            .unwrap();
    let breaker = config.policy["api"].circuit_breaker.as_ref().unwrap();
    assert_eq!(breaker.wait_duration, Duration::from_secs(600));
    assert_eq!(breaker.effective_max_wait(), Duration::from_secs(600));

    let err = ReliabilityConfig::from_toml(
        "[policy.api.circuit_breaker]\nwait_duration = \"10m\"\nmax_wait_duration = \"1m\"",
    )
    .unwrap_err();
    assert_eq!(
        err.field(),
        Some("policy.api.circuit_breaker.max_wait_duration")
    );
    assert!(err.to_string().contains("wait_duration (10m)"), "{err}");
}

#[test]
fn absurd_breaker_durations_and_sizes_are_typed_errors() {
    let cases = [
        ("wait_duration = \"500000000000y\"", "wait_duration"),
        ("slow_call_duration = \"1000y\"", "slow_call_duration"),
        (
            "window = { type = \"time\", duration = \"400days\", buckets = 10 }",
            "window.duration",
        ),
        (
            "window = { type = \"count\", size = 4294967295 }",
            "window.size",
        ),
        ("consecutive_failures = 4294967295", "consecutive_failures"),
        ("backoff_multiplier = 1e300", "backoff_multiplier"),
        (
            "permitted_calls_in_half_open = 100000",
            "permitted_calls_in_half_open",
        ),
    ];
    for (line, field) in cases {
        let text = format!("[policy.api.circuit_breaker]\n{line}");
        assert_eq!(
            field_of(&text),
            format!("policy.api.circuit_breaker.{field}"),
            "{line}"
        );
    }
}

/// Display and Debug of a config error, both of which end up in logs.
fn rendered(err: &ConfigFileError) -> (usize, usize) {
    (err.to_string().len(), format!("{err:?}").len())
}

#[test]
fn a_ten_megabyte_one_line_config_gives_a_short_error() {
    let ten_mb = 10 * 1024 * 1024;
    // not TOML at all: one line of 10 MB
    let garbage = "x".repeat(ten_mb);
    let err = ReliabilityConfig::from_toml(&garbage).unwrap_err();
    assert!(
        matches!(err, ConfigFileError::Parse(_)),
        "{:?}",
        rendered(&err)
    );
    let (display, debug) = rendered(&err);
    assert!(
        display < 1_000 && debug < 1_000,
        "{display} / {debug} bytes"
    );

    // a 10 MB string where a number belongs: toml's message quotes the value
    let text = format!("[policy.api.rate_limit]\nrate = \"{}\"", "9".repeat(ten_mb));
    let err = ReliabilityConfig::from_toml(&text).unwrap_err();
    let ConfigFileError::Parse(parse) = &err else {
        panic!("a type error is a parse error")
    };
    assert_eq!(parse.line(), Some(2));
    let (display, debug) = rendered(&err);
    assert!(
        display < 1_000 && debug < 1_000,
        "{display} / {debug} bytes"
    );
    assert!(err.to_string().contains("line 2"), "{err}");

    // a 1 MB unknown key
    let text = format!("[policy.api.rate_limit]\n{} = 1", "k".repeat(ten_mb / 10));
    let (display, debug) = rendered(&ReliabilityConfig::from_toml(&text).unwrap_err());
    assert!(
        display < 1_000 && debug < 1_000,
        "{display} / {debug} bytes"
    );
}

#[test]
fn a_five_megabyte_duration_gives_a_short_error() {
    // 5 MB for one stage, 1 MB for the others (the same path, a faster test)
    for (stage, megabytes) in [
        ("[policy.api.circuit_breaker]\nwait_duration", 5),
        ("[policy.api.rate_limit]\nperiod", 1),
        ("[policy.api.retry]\nmax_elapsed", 1),
    ] {
        let text = format!("{stage} = \"{}\"", "5".repeat(megabytes * 1024 * 1024));
        let err = ReliabilityConfig::from_toml(&text).unwrap_err();
        let (display, debug) = rendered(&err);
        assert!(
            display < 1_000 && debug < 1_000,
            "{stage}: {display} / {debug} bytes"
        );
        assert!(err.to_string().contains("bytes)"), "{err}");
    }
    // a huge value that parses but is out of range is quoted within bounds too
    let text = format!(
        "[policy.api.circuit_breaker]\nfailure_rate_threshold = 1{}.5",
        "0".repeat(300)
    );
    let err = ReliabilityConfig::from_toml(&text).unwrap_err();
    let (display, debug) = rendered(&err);
    assert!(
        display < 1_000 && debug < 1_000,
        "{display} / {debug} bytes"
    );
}

#[test]
fn a_one_megabyte_policy_name_is_cut_in_every_error_that_names_it() {
    let name = "p".repeat(1024 * 1024);
    // a policy with a 1 MB name is refused (a name is every metric's `name` label)
    let err =
        ReliabilityConfig::from_toml(&format!("[policy.{name}.rate_limit]\nrate = 1")).unwrap_err();
    let (display, debug) = rendered(&err);
    assert!(
        display < 1_000 && debug < 1_000,
        "{display} / {debug} bytes"
    );
    assert_eq!(err.field(), Some("policy"), "{err}");
    assert!(err.to_string().contains("at most 128 bytes"), "{err}");
    // asking for it, adding it in a reload
    let config = ReliabilityConfig::from_toml("[policy.api.rate_limit]\nrate = 1").unwrap();
    let err = tower_prism::ReliabilityLayer::from_config(&config, &name).unwrap_err();
    let (display, debug) = rendered(&err);
    assert!(
        display < 1_000 && debug < 1_000,
        "{display} / {debug} bytes"
    );
    let policies = tower_prism::Policies::new(&config).unwrap();
    let err = policies
        .reload_toml(&format!(
            "[policy.api.rate_limit]\nrate = 1\n[policy.{name}.rate_limit]\nrate = 1"
        ))
        .unwrap_err();
    assert!(
        matches!(err, ConfigFileError::Invalid(_)),
        "{:?}",
        rendered(&err)
    );
    let (display, debug) = rendered(&err);
    assert!(
        display < 1_000 && debug < 1_000,
        "{display} / {debug} bytes"
    );
}

#[test]
fn an_unknown_policy_lists_a_bounded_number_of_known_ones() {
    let text: String = (0..100)
        .map(|i| format!("[policy.p{i:03}.rate_limit]\nrate = 1\n"))
        .collect();
    let config = ReliabilityConfig::from_toml(&text).unwrap();
    let err = tower_prism::ReliabilityLayer::from_config(&config, "missing").unwrap_err();
    assert!(err.to_string().ends_with("p015, and 84 more)"), "{err}");
}

#[test]
fn policy_names_are_short_printable_and_not_empty() {
    let ok = format!(
        "[policy.{}.rate_limit]\nrate = 1",
        "n".repeat(tower_prism::MAX_POLICY_NAME)
    );
    assert!(ReliabilityConfig::from_toml(&ok).is_ok());
    let spaced = "[policy.\"checkout api\".rate_limit]\nrate = 1";
    assert!(ReliabilityConfig::from_toml(spaced).is_ok());
    for bad in [
        format!("[policy.{}.rate_limit]\nrate = 1", "n".repeat(129)),
        "[policy.\"\".rate_limit]\nrate = 1".to_owned(),
        "[policy.\"a\\nb\".rate_limit]\nrate = 1".to_owned(),
        // prints as "api": zero-width space, direction mark, BOM, padding
        "[policy.\"a\u{200b}pi\".rate_limit]\nrate = 1".to_owned(),
        "[policy.\"api\u{200e}\".rate_limit]\nrate = 1".to_owned(),
        "[policy.\"\u{feff}api\".rate_limit]\nrate = 1".to_owned(),
        "[policy.\"api \".rate_limit]\nrate = 1".to_owned(),
    ] {
        let err = ReliabilityConfig::from_toml(&bad).unwrap_err();
        assert_eq!(err.field(), Some("policy"), "{bad}: {err}");
    }
    let err = tower_prism::ReliabilityLayer::builder()
        .name("x".repeat(200))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "name");
    assert!(tower_prism::ReliabilityLayer::builder()
        .name("\u{1b}[31mred")
        .build()
        .is_err());
}

#[test]
fn a_bad_hedge_value_names_its_whole_path() {
    for (hedge, field) in [
        (
            "delay = \"10ms\"\nmax_hedged = 0",
            "policy.p.retry.hedge.max_hedged",
        ),
        ("percentile = 1.5", "policy.p.retry.hedge.percentile"),
    ] {
        let toml = format!("[policy.p.retry]\n[policy.p.retry.hedge]\n{hedge}");
        let err = ReliabilityConfig::from_toml(&toml).unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
    }
}
