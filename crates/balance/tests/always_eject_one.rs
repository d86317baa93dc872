//! Envoy's `always_eject_one_host`: one outlier is ejected even where
//! `max_ejection_percent` allows none (10 % of five endpoints), and only one.

mod common;

use std::time::Duration;

use common::{balance_with, eps, send};
use tower_prism_balance::{BalanceConfig, OutlierConfig, Strategy};

/// `endpoints` endpoints, the first `failing` of them always failing, behind a round robin
/// whose outliers are ejected after 3 failures in a row, at most 10 % of them at once.
/// Returns which endpoints end ejected after 200 calls, one every 10 ms.
async fn ejected(endpoints: usize, failing: usize, always_eject_one_host: bool) -> Vec<bool> {
    let outlier = OutlierConfig::builder()
        .consecutive_failures(3)
        .max_ejection_percent(10)
        .always_eject_one_host(always_eject_one_host)
        .build()
        .unwrap();
    let config = BalanceConfig::builder()
        .strategy(Strategy::RoundRobin)
        .outlier(outlier)
        .build()
        .unwrap();
    let eps = eps(endpoints);
    for ep in &eps[..failing] {
        ep.set_failing(true);
    }
    let mut balancer = balance_with(config, &eps);
    for i in 0..200 {
        let _ = send(&mut balancer, i).await;
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let snapshot = balancer.handle().snapshot();
    snapshot.endpoints.iter().map(|e| e.ejected).collect()
}

#[tokio::test(start_paused = true)]
async fn ten_percent_of_five_ejects_nothing_unless_one_is_always_ejected() {
    assert_eq!(
        ejected(5, 1, false).await,
        [false; 5],
        "10 % of 5 rounds to none"
    );
    assert_eq!(
        ejected(5, 1, true).await,
        [true, false, false, false, false],
        "the failing endpoint is ejected anyway"
    );
}

#[tokio::test(start_paused = true)]
async fn always_eject_one_host_ejects_one_not_every_outlier() {
    // Nine endpoints: once one failing endpoint is out, the other fails one call in eight
    // of the rest, too few for the first ejection to be ended as everyone's failures.
    let ejected = ejected(9, 2, true).await;
    assert_eq!(ejected.iter().filter(|e| **e).count(), 1, "{ejected:?}");
    assert!(!ejected[2..].iter().any(|e| *e), "{ejected:?}");
}

#[test]
fn the_setting_reads_from_toml_and_defaults_to_off() {
    assert!(!OutlierConfig::default().always_eject_one_host);
    let config: OutlierConfig = toml::from_str("always_eject_one_host = true").unwrap();
    assert!(config.always_eject_one_host);
}
