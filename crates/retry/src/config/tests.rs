use super::*;
use crate::backoff::{BackoffKind, Jitter};

#[test]
fn builders_set_every_field_and_validate() {
    let budget = BudgetConfig::builder()
        .enabled(true)
        .ratio(0.5)
        .success_ratio(0.25)
        .min_per_second(2)
        .window(Duration::from_secs(5))
        .unhealthy_ratio(0.1)
        .unhealthy_failure_rate(0.3)
        .build()
        .unwrap();
    let c = RetryConfig::builder()
        .max_attempts(5)
        .backoff(Backoff::fixed(Duration::from_millis(3)))
        .max_elapsed(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(300))
        .honor_retry_after(false)
        .max_retry_after(Duration::from_secs(9))
        .budget(budget.clone())
        .build()
        .unwrap();
    let expected = RetryConfig {
        max_attempts: 5,
        backoff: Backoff::fixed(Duration::from_millis(3)),
        max_elapsed: Some(Duration::from_secs(2)),
        attempt_timeout: Some(Duration::from_millis(300)),
        honor_retry_after: false,
        max_retry_after: Duration::from_secs(9),
        budget,
        hedge: None,
    };
    assert_eq!(c, expected);
    assert!(
        !RetryConfig::builder()
            .no_budget()
            .build()
            .unwrap()
            .budget
            .enabled
    );
    let err = RetryConfig::builder().max_attempts(0).build().unwrap_err();
    assert_eq!(err.field(), "max_attempts");
    let err = BudgetConfig::builder().ratio(-0.1).build().unwrap_err();
    assert_eq!(err.field(), "ratio");
    let err = BudgetConfig::builder()
        .success_ratio(f64::NAN)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "success_ratio");
}

#[test]
fn empty_section_is_the_default() {
    let c: RetryConfig = toml::from_str("").unwrap();
    assert_eq!(c, RetryConfig::default());
    c.validate().unwrap();
}

#[test]
fn round_trips_through_toml() {
    let mut c = RetryConfig {
        max_attempts: 5,
        max_elapsed: Some(Duration::from_secs(3)),
        attempt_timeout: Some(Duration::from_millis(250)),
        ..RetryConfig::default()
    };
    c.backoff.kind = BackoffKind::Linear;
    c.backoff.jitter = Jitter::Equal;
    c.budget.unhealthy_ratio = Some(0.05);
    let text = toml::to_string(&c).unwrap();
    assert_eq!(toml::from_str::<RetryConfig>(&text).unwrap(), c);
}

#[test]
fn unknown_fields_and_bad_values_are_rejected() {
    let err = toml::from_str::<RetryConfig>("max_atempts = 3").unwrap_err();
    assert!(err.to_string().contains("max_atempts"), "{err}");
    let err = toml::from_str::<RetryConfig>("backoff = { kind = \"cubic\" }").unwrap_err();
    assert!(err.to_string().contains("cubic"), "{err}");

    let bad = |f: fn(&mut RetryConfig)| {
        let mut c = RetryConfig::default();
        f(&mut c);
        c.validate().unwrap_err().field().to_string()
    };
    assert_eq!(bad(|c| c.max_attempts = 0), "max_attempts");
    assert_eq!(bad(|c| c.max_elapsed = Some(Duration::ZERO)), "max_elapsed");
    assert_eq!(
        bad(|c| c.attempt_timeout = Some(Duration::ZERO)),
        "attempt_timeout"
    );
    assert_eq!(
        bad(|c| c.backoff.max = Duration::from_millis(1)),
        "backoff.max"
    );
    assert_eq!(bad(|c| c.budget.ratio = -1.0), "budget.ratio");
    assert_eq!(
        bad(|c| c.budget.success_ratio = 10.5),
        "budget.success_ratio"
    );
    assert_eq!(bad(|c| c.budget.ratio = 11.0), "budget.ratio");
    assert_eq!(
        bad(|c| c.budget.window = Duration::from_millis(10)),
        "budget.window"
    );
    assert_eq!(
        bad(|c| c.budget.unhealthy_ratio = Some(0.6)),
        "budget.unhealthy_ratio",
        "above `success_ratio` when first attempts earn nothing"
    );
    assert_eq!(
        bad(|c| {
            c.budget.ratio = 0.2;
            c.budget.unhealthy_ratio = Some(0.3);
        }),
        "budget.unhealthy_ratio",
        "above `ratio` when first attempts earn"
    );
    assert_eq!(
        bad(|c| c.budget.unhealthy_failure_rate = 1.5),
        "budget.unhealthy_failure_rate"
    );
}

#[test]
fn absurd_sizes_and_durations_are_refused_with_the_bound() {
    let bad = |f: fn(&mut RetryConfig)| {
        let mut c = RetryConfig::default();
        f(&mut c);
        c.validate().unwrap_err()
    };
    let err = bad(|c| c.max_attempts = u32::MAX);
    assert_eq!(err.field(), "max_attempts");
    assert_eq!(err.reason(), "must be at most 100");
    let years: RetryConfig =
        toml::from_str("max_elapsed = \"500000000000y\"\nattempt_timeout = \"500000000000y\"")
            .unwrap();
    let err = years.validate().unwrap_err();
    assert_eq!(err.field(), "max_elapsed");
    assert!(err.reason().contains("at most 1day"), "{err}");
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    assert_eq!(
        bad(|c| c.attempt_timeout = Some(YEAR)).field(),
        "attempt_timeout"
    );
    assert_eq!(bad(|c| c.max_retry_after = YEAR).field(), "max_retry_after");
    assert_eq!(bad(|c| c.backoff.max = YEAR).field(), "backoff.max");
    assert_eq!(
        bad(|c| {
            c.backoff.base = YEAR;
            c.backoff.max = YEAR;
        })
        .field(),
        "backoff.base"
    );
    assert_eq!(bad(|c| c.budget.window = YEAR).field(), "budget.window");
    assert_eq!(
        bad(|c| c.budget.min_per_second = u32::MAX).field(),
        "budget.min_per_second"
    );
    // the bounds themselves are accepted
    let edge = RetryConfig {
        max_attempts: MAX_ATTEMPTS,
        max_elapsed: Some(MAX_CALL),
        attempt_timeout: Some(MAX_CALL),
        max_retry_after: MAX_WAIT,
        backoff: Backoff::linear(MAX_WAIT, MAX_WAIT),
        ..RetryConfig::default()
    };
    edge.validate().unwrap();
}

#[test]
fn max_retry_after_defaults_to_30s_and_reads_from_toml() {
    assert_eq!(
        RetryConfig::default().max_retry_after,
        Duration::from_secs(30)
    );
    let c: RetryConfig = toml::from_str("max_retry_after = \"2m\"").unwrap();
    assert_eq!(c.max_retry_after, Duration::from_secs(120));
    c.validate().unwrap();
}

#[test]
fn budget_keys_of_earlier_versions_keep_their_meaning() {
    // `ratio` is still retries per first attempt; a file of 0.1 that set it now also earns
    // on success unless it says `success_ratio = 0`.
    let old: BudgetConfig =
        toml::from_str("ratio = 0.1\nmin_per_second = 5\nunhealthy_ratio = 0.05").unwrap();
    old.validate().unwrap();
    assert_eq!(
        (old.ratio, old.min_per_second, old.unhealthy_ratio),
        (0.1, 5, Some(0.05))
    );
    assert_eq!(old.success_ratio, 0.5);
    assert_eq!(old.reference_ratio(), ("ratio", 0.1));
    let default = BudgetConfig::default();
    assert_eq!((default.ratio, default.success_ratio), (0.0, 0.5));
    assert_eq!(default.reference_ratio(), ("success_ratio", 0.5));
    let text = toml::to_string(&default).unwrap();
    assert_eq!(toml::from_str::<BudgetConfig>(&text).unwrap(), default);
    // a budget of nothing but the floor is valid
    let floor: BudgetConfig = toml::from_str("success_ratio = 0").unwrap();
    floor.validate().unwrap();
}
