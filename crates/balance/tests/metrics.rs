//! The balancer's metric series under endpoint churn, against a real Prometheus recorder
//! (which, like every `metrics` recorder, keeps each label set it was ever given).

mod common;

use std::time::Duration;

use common::Ep;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tower::{Service, ServiceExt};
use tower_prism_balance::{Balance, BalanceConfig, Strategy};
use tower_prism_core::metrics::balance::{SERIES_PER_BALANCER, SERIES_PER_ENDPOINT};

type B = Balance<String, Ep, u64>;

/// Every `prism_balance_*` sample in the rendered output: (metric{labels}, value).
fn samples(recorder: &PrometheusRecorder) -> Vec<(String, f64)> {
    recorder
        .handle()
        .render()
        .lines()
        .filter(|l| l.starts_with("prism_balance_"))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// The value of `metric` for the endpoint in `slot`.
fn slot_value(samples: &[(String, f64)], metric: &str, slot: u32) -> f64 {
    let label = format!("endpoint=\"{slot}\"");
    let found: Vec<f64> = samples
        .iter()
        .filter(|(s, _)| s.starts_with(&format!("{metric}{{")) && s.contains(&label))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{metric} slot {slot}: {samples:?}");
    found[0]
}

fn address(i: usize) -> String {
    format!("10.0.{}.{}:80", i / 256, i % 256)
}

async fn send(b: &mut B, req: u64) -> usize {
    b.ready().await.unwrap().call(req).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn endpoint_series_stay_bounded_by_peak_endpoints_under_churn() {
    const CHURNED: usize = 2_000;
    const LIVE: usize = 8;
    let recorder = PrometheusBuilder::new().build_recorder();
    let mut b: B = metrics::with_local_recorder(&recorder, || {
        Balance::builder()
            .name("churn")
            .config(
                BalanceConfig::builder()
                    .strategy(Strategy::RoundRobin)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    });
    let handle = b.handle().clone();
    let mut live = std::collections::VecDeque::new();
    for i in 0..CHURNED {
        metrics::with_local_recorder(&recorder, || handle.add(address(i), Ep::new(i))).unwrap();
        live.push_back(address(i));
        // every endpoint serves, so every one of its series is written
        send(&mut b, i as u64).await;
        if live.len() == LIVE {
            assert!(handle.remove(&live.pop_front().unwrap()));
        }
    }
    let samples = samples(&recorder);
    let bound = SERIES_PER_ENDPOINT * LIVE + SERIES_PER_BALANCER;
    assert!(
        samples.len() <= bound,
        "{} series for {CHURNED} endpoints churned with at most {LIVE} live (bound {bound})",
        samples.len()
    );
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.endpoints.len(), LIVE - 1);
    let healthy: f64 = samples
        .iter()
        .filter(|(s, _)| s.starts_with("prism_balance_endpoint_healthy{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        healthy,
        (LIVE - 1) as f64,
        "only live endpoints read healthy"
    );
    for e in &snapshot.endpoints {
        assert!(e.slot < LIVE as u32, "{e:?}");
        assert_eq!(
            slot_value(&samples, "prism_balance_endpoint_healthy", e.slot),
            1.0
        );
        assert_eq!(slot_value(&samples, "prism_balance_in_flight", e.slot), 0.0);
    }
    let requests: f64 = samples
        .iter()
        .filter(|(s, _)| s.starts_with("prism_balance_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        requests, CHURNED as f64,
        "counters carry on across a slot's occupants"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reused_slot_starts_fresh_and_late_completions_leave_it_alone() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let slow = Ep::new(0).with_delay(Duration::from_secs(10));
    let mut b: B = metrics::with_local_recorder(&recorder, || {
        Balance::builder()
            .name("reuse")
            .config(
                BalanceConfig::builder()
                    .strategy(Strategy::RoundRobin)
                    .build()
                    .unwrap(),
            )
            .endpoint("10.0.0.1:80".to_owned(), slow)
            .build()
            .unwrap()
    });
    let handle = b.handle().clone();
    assert_eq!(handle.snapshot().endpoints[0].slot, 0);
    let old_call = tokio::spawn(b.ready().await.unwrap().call(1));
    tokio::task::yield_now().await;
    assert_eq!(
        slot_value(&samples(&recorder), "prism_balance_in_flight", 0),
        1.0
    );

    // the endpoint leaves with its call in flight: the slot reads empty
    assert!(handle.remove(&"10.0.0.1:80".to_owned()));
    let s = samples(&recorder);
    assert_eq!(slot_value(&s, "prism_balance_in_flight", 0), 0.0);
    assert_eq!(slot_value(&s, "prism_balance_endpoint_healthy", 0), 0.0);

    // a new endpoint takes slot 0 with fresh gauges, and gets a call of its own
    let next = Ep::new(1).with_delay(Duration::from_secs(20));
    metrics::with_local_recorder(&recorder, || handle.add("10.0.0.2:80".to_owned(), next)).unwrap();
    assert_eq!(handle.snapshot().endpoints[0].slot, 0);
    let new_call = tokio::spawn(b.ready().await.unwrap().call(2));
    tokio::task::yield_now().await;
    let s = samples(&recorder);
    assert_eq!(slot_value(&s, "prism_balance_in_flight", 0), 1.0);
    assert_eq!(slot_value(&s, "prism_balance_endpoint_healthy", 0), 1.0);

    // the old call completes: it counted on its own endpoint, not on the slot's new one
    assert_eq!(old_call.await.unwrap().unwrap(), 0);
    let s = samples(&recorder);
    assert_eq!(slot_value(&s, "prism_balance_in_flight", 0), 1.0);
    assert_eq!(handle.snapshot().endpoints[0].in_flight, 1);
    assert_eq!(new_call.await.unwrap().unwrap(), 1);
    let s = samples(&recorder);
    assert_eq!(slot_value(&s, "prism_balance_in_flight", 0), 0.0);
    assert_eq!(handle.snapshot().endpoints[0].in_flight, 0);
}

/// Calls completing on other threads while their endpoints leave and their slots are
/// reused: afterwards every slot's gauges agree with the live endpoints.
#[test]
fn concurrent_completions_and_churn_leave_every_slot_gauge_consistent() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let recorder = PrometheusBuilder::new().build_recorder();
    let b: B = metrics::with_local_recorder(&recorder, || {
        Balance::builder()
            .name("threads")
            .config(
                BalanceConfig::builder()
                    .strategy(Strategy::LeastRequests)
                    .build()
                    .unwrap(),
            )
            .endpoints((0..4).map(|i| (address(i), Ep::new(i).with_delay(Duration::ZERO))))
            .build()
            .unwrap()
    });
    let handle = b.handle().clone();
    runtime.block_on(async {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (mut b, stop) = (b.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        i += 1;
                        let call = b.ready().await.unwrap().call(c * 1_000_000 + i);
                        // some calls are dropped mid-way, most complete
                        if i.is_multiple_of(5) {
                            drop(tokio::time::timeout(Duration::ZERO, call).await);
                        } else {
                            let _ = call.await;
                        }
                    }
                })
            })
            .collect();
        for i in 4..404 {
            metrics::with_local_recorder(&recorder, || {
                handle.add(address(i), Ep::new(i).with_delay(Duration::ZERO))
            })
            .unwrap();
            assert!(handle.remove(&address(i - 4)));
            tokio::task::yield_now().await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
    });
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.endpoints.len(), 4);
    assert!(snapshot.endpoints.iter().all(|e| e.in_flight == 0));
    let s = samples(&recorder);
    assert!(
        s.len() <= SERIES_PER_ENDPOINT * 5 + SERIES_PER_BALANCER,
        "{}",
        s.len()
    );
    for (series, value) in &s {
        if series.starts_with("prism_balance_in_flight{") {
            assert_eq!(*value, 0.0, "{series}");
        }
    }
    let healthy: f64 = s
        .iter()
        .filter(|(s, _)| s.starts_with("prism_balance_endpoint_healthy{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(healthy, 4.0);
}

#[tokio::test(start_paused = true)]
async fn a_probed_endpoint_reads_unhealthy_until_its_first_probe_passes() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let b: B = metrics::with_local_recorder(&recorder, || {
        Balance::builder()
            .name("probed")
            .endpoint(address(1), Ep::new(1))
            .health_check(|_: &String| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                true
            })
            .build()
            .unwrap()
    });
    let healthy = || slot_value(&samples(&recorder), "prism_balance_endpoint_healthy", 0);
    assert_eq!(healthy(), 0.0, "out of rotation while its first probe runs");
    assert!(!b.handle().snapshot().endpoints[0].healthy);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(healthy(), 1.0);
    assert!(b.handle().snapshot().endpoints[0].healthy);
}
