//! Envoy's statistical success-rate rule (`success_rate_stdev_factor`): an endpoint whose
//! success rate over its interval is below the mean of the endpoints' less a multiple of
//! their standard deviation is ejected, given enough endpoints with enough calls. And the
//! fixed rule (`success_rate_threshold`) at the ends of its range.

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Service, ServiceExt};
use tower_prism_balance::{Balance, BalanceConfig, OutlierConfig, Strategy};

/// An endpoint failing the first `fail_in_ten` of every ten calls (or, with a `period`,
/// only the last of every `period` calls), at once.
#[derive(Clone)]
struct Flaky {
    fail_in_ten: u64,
    period: Option<u64>,
    calls: Arc<AtomicU64>,
}

impl Flaky {
    fn new(fail_in_ten: u64) -> Self {
        Flaky {
            fail_in_ten,
            period: None,
            calls: Arc::default(),
        }
    }

    fn failing_last_of(period: u64) -> Self {
        Flaky {
            period: Some(period),
            ..Flaky::new(0)
        }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<u64> for Flaky {
    type Response = ();
    type Error = std::io::Error;
    type Future = Ready<Result<(), std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u64) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let fails = match self.period {
            Some(period) => n % period == period - 1,
            None => n % 10 < self.fail_in_ten,
        };
        ready(if fails {
            Err(std::io::Error::other("failed"))
        } else {
            Ok(())
        })
    }
}

/// Only the statistical rule: intervals of 1 s, at least `hosts` endpoints with at least
/// `volume` calls, 1.9 standard deviations (Envoy's default factor).
fn statistical(factor: Option<f64>, hosts: u32, volume: u32) -> BalanceConfig {
    let outlier = OutlierConfig::builder()
        .consecutive_failures(0)
        .interval(Duration::from_secs(1))
        .success_rate_stdev_factor(factor)
        .success_rate_minimum_hosts(hosts)
        .success_rate_request_volume(volume)
        .max_ejection_percent(50)
        .build()
        .unwrap();
    BalanceConfig::builder()
        .strategy(Strategy::RoundRobin)
        .outlier(outlier)
        .build()
        .unwrap()
}

/// Endpoint 0 fails 3 calls in 10, the rest none; a round robin sends a call every 5 ms
/// for 4 s. Whether endpoint 0 was ejected, and how many calls it took.
async fn run(config: BalanceConfig, endpoints: usize) -> (bool, u64) {
    let eps: Vec<Flaky> = (0..endpoints)
        .map(|i| Flaky::new(if i == 0 { 3 } else { 0 }))
        .collect();
    let mut balancer: Balance<usize, Flaky, u64> = Balance::builder()
        .config(config)
        .endpoints(eps.iter().cloned().enumerate())
        .build()
        .unwrap();
    for i in 0..800 {
        let _ = balancer.ready().await.unwrap().call(i).await;
        tokio::time::advance(Duration::from_millis(5)).await;
    }
    let snapshot = balancer.handle().snapshot();
    (snapshot.endpoints[0].ejected, eps[0].calls())
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_well_below_the_others_success_rate_is_ejected() {
    let (ejected, calls) = run(statistical(Some(1.9), 5, 20), 6).await;
    assert!(ejected, "70 % against 100 % over six endpoints");
    // Judged with the others when the first interval ends: about 1 s of its one call in
    // six, then no more.
    assert!((33..=40).contains(&calls), "{calls} calls");
}

#[tokio::test(start_paused = true)]
async fn too_few_endpoints_with_enough_calls_eject_nothing() {
    let (ejected, calls) = run(statistical(Some(1.9), 5, 20), 4).await;
    assert!(!ejected, "four endpoints, five needed");
    assert_eq!(calls, 200);
    let (ejected, _) = run(statistical(Some(1.9), 5, 1_000), 6).await;
    assert!(!ejected, "no endpoint reaches 1,000 calls in an interval");
}

#[tokio::test(start_paused = true)]
async fn the_rule_is_off_without_a_factor_and_a_wide_factor_spares_the_endpoint() {
    let (ejected, _) = run(statistical(None, 5, 20), 6).await;
    assert!(!ejected);
    // 70 % is 2.2 standard deviations below the mean of six (0.95 - 2.2 * 0.112): a factor
    // of 2.5 keeps it.
    let (ejected, _) = run(statistical(Some(2.5), 5, 20), 6).await;
    assert!(!ejected);
}

/// Endpoint 0 fails every other call (never two in a row: the streak rule stays quiet),
/// the rest none; a round robin sends a call every `every` for 30 s. Whether endpoint 0
/// was ejected, and how many calls it took.
async fn alternating(config: BalanceConfig, endpoints: usize, every: Duration) -> (bool, u64) {
    let eps: Vec<Flaky> = (0..endpoints)
        .map(|i| {
            if i == 0 {
                Flaky::failing_last_of(2)
            } else {
                Flaky::new(0)
            }
        })
        .collect();
    let mut balancer: Balance<usize, Flaky, u64> = Balance::builder()
        .config(config)
        .endpoints(eps.iter().cloned().enumerate())
        .build()
        .unwrap();
    let calls = Duration::from_secs(30).as_millis() / every.as_millis();
    for i in 0..calls as u64 {
        let _ = balancer.ready().await.unwrap().call(i).await;
        tokio::time::advance(every).await;
    }
    let snapshot = balancer.handle().snapshot();
    (snapshot.endpoints[0].ejected, eps[0].calls())
}

/// The outlier defaults but a round robin, for even counts.
fn defaults() -> BalanceConfig {
    BalanceConfig::builder()
        .strategy(Strategy::RoundRobin)
        .build()
        .unwrap()
}

/// The statistical rule runs by default, as Envoy's (`enforcing_success_rate` 100,
/// `success_rate_stdev_factor` 1900, 5 endpoints of 100 calls): of five endpoints, the
/// one failing half its calls is ejected when its interval ends. It was off unless a
/// factor was set, and such an endpoint, never failing twice in a row, stayed for good.
#[tokio::test(start_paused = true)]
async fn by_default_an_endpoint_far_below_the_others_is_ejected() {
    let (ejected, calls) = alternating(defaults(), 5, Duration::from_millis(5)).await;
    assert!(ejected, "50 % against 100 % over five endpoints");
    // 400 calls in each 10 s interval: judged with the others when the first one ends,
    // then no more calls.
    assert!((400..=801).contains(&calls), "{calls} calls");
}

/// With the defaults, fewer than 5 endpoints, or fewer than 100 calls to each in an
/// interval, eject nothing.
#[tokio::test(start_paused = true)]
async fn by_default_too_few_endpoints_or_calls_eject_nothing() {
    let (ejected, calls) = alternating(defaults(), 4, Duration::from_millis(5)).await;
    assert!(!ejected, "four endpoints, five needed");
    assert_eq!(calls, 1_500);
    // 80 calls to each endpoint in each 10 s interval
    let (ejected, _) = alternating(defaults(), 5, Duration::from_millis(25)).await;
    assert!(!ejected, "no endpoint reaches 100 calls in an interval");
}

/// In TOML, where no value is `None`, `success_rate_stdev_factor = 0` turns the rule off
/// (omitted, it is Envoy's 1.9), and a config with the rule off is written so. Omitting
/// it was the only way to turn the rule off, and 0 was refused.
#[tokio::test(start_paused = true)]
async fn zero_turns_the_rule_off_in_toml() {
    let default: BalanceConfig = toml::from_str("").unwrap();
    assert_eq!(default.outlier.success_rate_stdev_factor, Some(1.9));
    let text = toml::to_string(&default).unwrap();
    assert!(
        text.contains("\nsuccess_rate_stdev_factor = 1.9\n"),
        "{text}"
    );
    let off: BalanceConfig =
        toml::from_str("strategy = \"round_robin\"\n[outlier]\nsuccess_rate_stdev_factor = 0")
            .unwrap();
    off.validate().unwrap();
    assert_eq!(off.outlier.success_rate_stdev_factor, None);
    let text = toml::to_string(&off).unwrap();
    assert!(text.contains("success_rate_stdev_factor = 0"), "{text}");
    assert_eq!(toml::from_str::<BalanceConfig>(&text).unwrap(), off);
    let (ejected, _) = alternating(off, 5, Duration::from_millis(5)).await;
    assert!(!ejected);
}

/// A factor below the rule's resolution (a thousandth, Envoy's unit) rounded to 0, which
/// turned the rule off; it now counts as the smallest factor, and ejects.
#[tokio::test(start_paused = true)]
async fn a_factor_below_a_thousandth_keeps_the_rule_on() {
    let (ejected, _) = run(statistical(Some(0.0001), 5, 20), 6).await;
    assert!(ejected);
}

/// The fixed success-rate threshold: one endpoint failing every call is ejected however low
/// the threshold (one under 0.0005 rounded to 0 per mille, which turned the rule off), and
/// the threshold is not rounded to a thousandth (0.9996 is not 1: 99.97 % stays).
#[tokio::test(start_paused = true)]
async fn the_success_rate_threshold_is_exact_and_never_off_when_set() {
    let threshold = |ratio: f64| {
        let outlier = OutlierConfig::builder()
            .consecutive_failures(0)
            .success_rate_threshold(Some(ratio))
            .min_requests(5)
            .max_ejection_percent(50)
            .build()
            .unwrap();
        BalanceConfig::builder()
            .strategy(Strategy::RoundRobin)
            .outlier(outlier)
            .build()
            .unwrap()
    };
    let failing = [Flaky::new(10), Flaky::new(0)];
    let mut balancer: Balance<usize, Flaky, u64> = Balance::builder()
        .config(threshold(0.0004))
        .endpoints(failing.iter().cloned().enumerate())
        .build()
        .unwrap();
    for i in 0..40 {
        let _ = balancer.ready().await.unwrap().call(i).await;
    }
    assert!(
        balancer.handle().snapshot().endpoints[0].ejected,
        "0 % < 0.04 %"
    );

    // 1 failure in 3,000 calls (99.967 %, judged at that failure) is above 99.96 %
    let nearly = [Flaky::failing_last_of(3_000), Flaky::new(0)];
    let mut balancer: Balance<usize, Flaky, u64> = Balance::builder()
        .config(threshold(0.9996))
        .endpoints(nearly.iter().cloned().enumerate())
        .build()
        .unwrap();
    for i in 0..6_000 {
        let _ = balancer.ready().await.unwrap().call(i).await;
    }
    assert!(!balancer.handle().snapshot().endpoints[0].ejected);
}

#[test]
fn bad_values_are_typed_errors_naming_the_field() {
    let build = |factor, hosts, volume| {
        OutlierConfig::builder()
            .success_rate_stdev_factor(factor)
            .success_rate_minimum_hosts(hosts)
            .success_rate_request_volume(volume)
            .build()
    };
    for (factor, hosts, volume, field) in [
        (Some(0.0), 5, 100, "success_rate_stdev_factor"),
        (Some(-1.0), 5, 100, "success_rate_stdev_factor"),
        (Some(f64::NAN), 5, 100, "success_rate_stdev_factor"),
        (Some(1900.0), 5, 100, "success_rate_stdev_factor"),
        (Some(1.9), 0, 100, "success_rate_minimum_hosts"),
        (Some(1.9), 5, 0, "success_rate_request_volume"),
    ] {
        let error = build(factor, hosts, volume).unwrap_err();
        assert_eq!(error.field(), field, "{factor:?} {hosts} {volume}");
    }
    let toml: OutlierConfig = toml::from_str(
        "success_rate_stdev_factor = 1.9\nsuccess_rate_minimum_hosts = 3\nsuccess_rate_request_volume = 50",
    )
    .unwrap();
    toml.validate().unwrap();
    assert_eq!(toml.success_rate_stdev_factor, Some(1.9));
}
