//! Balancer behaviour: distribution per strategy, readiness, ejection, health checks, dynamic endpoints.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Ep;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{BoxError, Service, ServiceExt};
use tower_prism_balance::{hash_key, Balance, BalanceConfig, Error, OutlierConfig, Strategy};
use tower_prism_core::{HealthSignal, Outcome};

type B = Balance<usize, Ep, u64>;

fn eps(n: usize) -> Vec<Ep> {
    (0..n).map(Ep::new).collect()
}

fn balance(strategy: Strategy, eps: &[Ep]) -> B {
    Balance::builder()
        .config(BalanceConfig::builder().strategy(strategy).build().unwrap())
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .build()
        .unwrap()
}

async fn send(b: &mut B, req: u64) -> Result<usize, BoxError> {
    b.ready().await?.call(req).await
}

fn no_healthy(err: &BoxError) -> Option<usize> {
    match err.downcast_ref::<Error>() {
        Some(Error::NoHealthyEndpoint { endpoints }) => Some(*endpoints),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn round_robin_is_exact() {
    let eps = eps(3);
    let mut b = balance(Strategy::RoundRobin, &eps);
    let mut order = Vec::new();
    for i in 0..300 {
        order.push(send(&mut b, i).await.unwrap());
    }
    for w in order.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 3, "{order:?}");
    }
    for e in &eps {
        assert_eq!(e.hits(), 100);
    }
    // clones share the rotation (axum clones per request)
    let first = send(&mut b.clone(), 0).await.unwrap();
    let second = send(&mut b.clone(), 0).await.unwrap();
    assert_ne!(first, second);
}

#[tokio::test(start_paused = true)]
async fn weighted_round_robin_follows_weights() {
    let eps = eps(3);
    let mut b: B = Balance::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::WeightedRoundRobin)
                .build()
                .unwrap(),
        )
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .weights([(0, 5), (1, 3), (2, 2)])
        .build()
        .unwrap();
    for i in 0..1000 {
        send(&mut b, i).await.unwrap();
    }
    let hits: Vec<usize> = eps.iter().map(Ep::hits).collect();
    for (h, want) in hits.iter().zip([500, 300, 200]) {
        assert!(h.abs_diff(want) <= 10, "{hits:?}");
    }
    // weights can change at runtime
    assert_eq!(b.handle().set_weight(&2, 5), Ok(true));
    assert!(b.handle().set_weight(&2, 0).is_err());
    for i in 0..1300 {
        send(&mut b, i).await.unwrap();
    }
    let more: Vec<usize> = eps.iter().zip(&hits).map(|(e, h)| e.hits() - h).collect();
    for (h, want) in more.iter().zip([500, 300, 500]) {
        assert!(h.abs_diff(want) <= 10, "{more:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn least_requests_spreads_outstanding_calls() {
    let eps: Vec<Ep> = (0..3)
        .map(|i| Ep::new(i).with_delay(Duration::from_secs(10)))
        .collect();
    let mut b = balance(Strategy::LeastRequests, &eps);
    let mut pending = Vec::new();
    for i in 0..30 {
        let fut = b.ready().await.unwrap().call(i);
        pending.push(tokio::spawn(fut));
    }
    for e in &eps {
        assert_eq!(e.hits(), 10, "every endpoint holds a third of the calls");
    }
    let snap = b.handle().snapshot();
    assert!(snap.endpoints.iter().all(|e| e.in_flight == 10), "{snap:?}");
    for p in pending {
        p.await.unwrap().unwrap();
    }
    assert!(b
        .handle()
        .snapshot()
        .endpoints
        .iter()
        .all(|e| e.in_flight == 0));
}

#[tokio::test(start_paused = true)]
async fn p2c_prefers_the_fast_endpoint() {
    let eps = vec![
        Ep::new(0).with_delay(Duration::from_millis(5)),
        Ep::new(1).with_delay(Duration::from_millis(5)),
        Ep::new(2).with_delay(Duration::from_millis(200)),
    ];
    let mut b = balance(Strategy::P2cPeakEwma, &eps);
    for i in 0..600 {
        send(&mut b, i).await.unwrap();
    }
    let slow = eps[2].hits();
    assert!(slow < 30, "slow endpoint got {slow} of 600");
    assert!(eps[0].hits() > 200 && eps[1].hits() > 200);
    let snap = b.handle().snapshot();
    assert!(
        snap.endpoints[2].latency_ewma >= Duration::from_millis(150),
        "{snap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn consistent_hash_is_stable_and_moves_few_keys() {
    let eps = eps(5);
    let mut b: B = Balance::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::ConsistentHash)
                .build()
                .unwrap(),
        )
        .key_fn(|req: &u64| hash_key(req))
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .build()
        .unwrap();
    let mut owner = Vec::new();
    for k in 0..500u64 {
        let a = send(&mut b, k).await.unwrap();
        assert_eq!(send(&mut b, k).await.unwrap(), a, "same key, same endpoint");
        owner.push(a);
    }
    b.handle().remove(&3);
    for k in 0..500u64 {
        let now = send(&mut b, k).await.unwrap();
        if owner[k as usize] != 3 {
            assert_eq!(
                now, owner[k as usize],
                "key {k} moved though its endpoint stayed"
            );
        } else {
            assert_ne!(now, 3);
        }
    }
    b.handle().add(3, eps[3].clone()).unwrap();
    b.handle().add(9, Ep::new(9)).unwrap();
    let mut moved = 0;
    for k in 0..500u64 {
        let now = send(&mut b, k).await.unwrap();
        if now != owner[k as usize] {
            assert_eq!(now, 9, "only the new endpoint takes keys");
            moved += 1;
        }
    }
    assert!(
        (40..140).contains(&moved),
        "about 1/6 of keys move, got {moved}"
    );
    // ejected endpoints pass their keys to the runner-up, without waiting
    eps[0].set_failing(true);
    let key = (0..500u64).find(|k| owner[*k as usize] == 0).unwrap();
    assert!(send(&mut b, key).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn consistent_hash_needs_a_key_fn() {
    let err = Balance::<usize, Ep, u64>::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::ConsistentHash)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref c) if c.field() == "strategy"),
        "{err}"
    );
    let b = balance(Strategy::RoundRobin, &eps(1));
    let mut config = BalanceConfig::default();
    config.strategy = Strategy::ConsistentHash;
    assert!(b.handle().reconfigure(&config).is_err());
}

#[tokio::test(start_paused = true)]
async fn check_refuses_what_reconfigure_refuses_and_changes_nothing() {
    let b = balance(Strategy::RoundRobin, &eps(1));
    let handle = b.handle().clone();
    let mut hash = BalanceConfig::default();
    hash.strategy = Strategy::ConsistentHash;
    assert_eq!(handle.check(&hash).unwrap_err().field(), "strategy");
    let mut bad = BalanceConfig::default();
    bad.outlier.max_ejection_percent = 101;
    assert_eq!(
        handle.check(&bad).unwrap_err().field(),
        "outlier.max_ejection_percent"
    );
    let good = BalanceConfig::builder()
        .strategy(Strategy::LeastRequests)
        .build()
        .unwrap();
    handle.check(&good).unwrap();
    assert_eq!(
        handle.snapshot().strategy,
        Strategy::RoundRobin,
        "check applies nothing"
    );
    assert_eq!(handle.config().strategy, Strategy::RoundRobin);
}

fn ejecting(strategy: Strategy, max_percent: u32) -> BalanceConfig {
    let outlier = OutlierConfig::builder()
        .consecutive_failures(3)
        .base_ejection_time(Duration::from_secs(10))
        .max_ejection_time(Duration::from_secs(60))
        .max_ejection_percent(max_percent)
        .build()
        .unwrap();
    BalanceConfig::builder()
        .strategy(strategy)
        .outlier(outlier)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn ejection_and_restoration() {
    let eps = eps(3);
    eps[1].set_failing(true);
    let mut b: B = Balance::builder()
        .config(ejecting(Strategy::RoundRobin, 50))
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .build()
        .unwrap();
    let mut errors = 0;
    for i in 0..30 {
        errors += send(&mut b, i).await.is_err() as usize;
    }
    assert_eq!(errors, 3, "ejected after 3 consecutive failures");
    let snap = b.handle().snapshot();
    assert!(snap.endpoints[1].ejected && !snap.endpoints[1].healthy);
    assert_eq!(snap.healthy(), 2);
    assert_eq!(eps[1].hits(), 3);

    // after the ejection time it is back, fails again and is ejected for twice as long
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(b.handle().snapshot().endpoints[1].healthy);
    for i in 0..30 {
        let _ = send(&mut b, i).await;
    }
    assert_eq!(eps[1].hits(), 6);
    let snap = b.handle().snapshot();
    assert_eq!(snap.endpoints[1].ejections, 2);
    tokio::time::advance(Duration::from_secs(15)).await;
    assert!(
        b.handle().snapshot().endpoints[1].ejected,
        "second ejection lasts 20s"
    );
    eps[1].set_failing(false);
    tokio::time::advance(Duration::from_secs(5)).await;
    for i in 0..30 {
        send(&mut b, i).await.unwrap();
    }
    assert_eq!(b.handle().snapshot().healthy(), 3);
    assert_eq!(eps[1].hits(), 16);
}

#[tokio::test(start_paused = true)]
async fn success_rate_ejection_with_a_classifier() {
    // responses are fine at the transport level, but the classifier calls endpoint 0's answers failures
    let eps = eps(2);
    let mut b = Balance::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::RoundRobin)
                .outlier(
                    OutlierConfig::builder()
                        .consecutive_failures(0)
                        .success_rate_threshold(Some(0.9))
                        .min_requests(10)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .classify(|r: Result<&usize, &std::io::Error>| match r {
            Ok(0) | Err(_) => Outcome::RETRYABLE,
            Ok(_) => Outcome::Success,
        })
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .build()
        .unwrap();
    for i in 0..40 {
        b.ready().await.unwrap().call(i).await.unwrap();
    }
    assert_eq!(eps[0].hits(), 10, "ejected when its 10th call completed");
    assert_eq!(b.handle().snapshot().endpoints[0].failures, 10);
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_caps_ejections() {
    let eps = eps(4);
    for e in &eps {
        e.set_failing(true);
    }
    let mut b: B = Balance::builder()
        .config(ejecting(Strategy::RoundRobin, 50))
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .build()
        .unwrap();
    for i in 0..100 {
        let _ = send(&mut b, i).await;
    }
    let snap = b.handle().snapshot();
    assert_eq!(
        snap.endpoints.iter().filter(|e| e.ejected).count(),
        2,
        "{snap:?}"
    );
    assert_eq!(snap.healthy(), 2);
}

#[tokio::test(start_paused = true)]
async fn all_endpoints_unhealthy_is_a_typed_error_not_a_hang() {
    let eps = eps(2);
    for e in &eps {
        e.set_failing(true);
    }
    let mut b: B = Balance::builder()
        .config(ejecting(Strategy::P2cPeakEwma, 100))
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .build()
        .unwrap();
    for i in 0..6 {
        let err = send(&mut b, i).await.unwrap_err();
        assert!(err.is::<std::io::Error>(), "{err}");
    }
    let mut task = tokio_test::task::spawn(());
    task.enter(|cx, _| assert_ready_ok!(b.poll_ready(cx)));
    let err = b.call(1).await.unwrap_err();
    assert_eq!(no_healthy(&err), Some(2));
    // restored when the ejection ends
    tokio::time::advance(Duration::from_secs(10)).await;
    eps[0].set_failing(false);
    assert_eq!(send(&mut b, 0).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn no_endpoints_is_a_typed_error() {
    let mut b = Balance::<usize, Ep, u64>::new(BalanceConfig::default()).unwrap();
    let mut task = tokio_test::task::spawn(());
    task.enter(|cx, _| assert_ready_ok!(b.poll_ready(cx)));
    let err = b.call(1).await.unwrap_err();
    assert_eq!(no_healthy(&err), Some(0));
    assert!(b.handle().is_empty());
    // call without poll_ready also fails cleanly
    let err = b.call(1).await.unwrap_err();
    assert_eq!(no_healthy(&err), Some(0));
}

#[tokio::test(start_paused = true)]
async fn not_ready_endpoints_are_skipped_and_readiness_wakes() {
    let eps = eps(2);
    eps[0].set_ready(false);
    let mut b = balance(Strategy::RoundRobin, &eps);
    for i in 0..10 {
        assert_eq!(send(&mut b, i).await.unwrap(), 1);
    }
    eps[1].set_ready(false);
    let mut task = tokio_test::task::spawn(());
    task.enter(|cx, _| assert_pending!(b.poll_ready(cx)));
    eps[0].set_ready(true);
    assert!(task.is_woken());
    task.enter(|cx, _| assert_ready_ok!(b.poll_ready(cx)));
    assert_eq!(b.call(0).await.unwrap(), 0);

    // a new endpoint wakes a parked caller too
    eps[0].set_ready(false);
    let mut task = tokio_test::task::spawn(());
    task.enter(|cx, _| assert_pending!(b.poll_ready(cx)));
    b.handle().add(7, Ep::new(7)).unwrap();
    assert!(task.is_woken());
    task.enter(|cx, _| assert_ready_ok!(b.poll_ready(cx)));
    assert_eq!(b.call(0).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn dynamic_add_and_remove_under_load() {
    let b = balance(Strategy::P2cPeakEwma, &eps(3));
    let handle = b.handle().clone();
    let slow = Ep::new(100).with_delay(Duration::from_secs(5));
    handle.add(100, slow.clone()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let mut b = b.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            let mut i = c * 1_000_000;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let fut = b.ready().await.unwrap().call(i);
                // calls run concurrently, so some are in flight while the set changes
                calls.push(tokio::spawn(fut));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            calls
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = handle.snapshot();
    let on_slow = before
        .endpoints
        .iter()
        .find(|e| e.key == 100)
        .unwrap()
        .in_flight;
    assert!(
        on_slow > 0,
        "the slow endpoint has calls in flight: {before:?}"
    );
    assert!(handle.remove(&100));
    for round in 0..20usize {
        handle.add(10 + round, Ep::new(10 + round)).unwrap();
        tokio::time::sleep(Duration::from_millis(7)).await;
        if round % 2 == 0 {
            handle.remove(&(10 + round));
        }
    }
    handle.remove(&0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for c in clients {
        for call in c.await.unwrap() {
            // every call succeeds, those in flight to removed endpoints included
            call.await.unwrap().unwrap();
            total += 1;
        }
    }
    assert!(total > 400, "{total}");
    assert_eq!(
        slow.hits() as u64,
        on_slow,
        "no call reached the slow endpoint after its removal"
    );
    let snap = handle.snapshot();
    assert_eq!(snap.endpoints.len(), 2 + 10, "{:?}", handle.keys());
    assert!(snap.endpoints.iter().all(|e| e.in_flight == 0));
    assert!(!handle.keys().contains(&0));
}

#[tokio::test(start_paused = true)]
async fn in_flight_requests_to_a_removed_endpoint_complete() {
    let slow = Ep::new(1).with_delay(Duration::from_secs(1));
    let mut b = balance(Strategy::RoundRobin, std::slice::from_ref(&slow));
    let fut = b.ready().await.unwrap().call(0);
    assert!(b.handle().remove(&1));
    assert_eq!(fut.await.unwrap(), 1);
    let err = send(&mut b, 0).await.unwrap_err();
    assert_eq!(no_healthy(&err), Some(0));
}

#[tokio::test(start_paused = true)]
async fn active_health_checks_use_thresholds() {
    let eps = eps(2);
    let down = Arc::new(AtomicBool::new(false));
    let probe_down = down.clone();
    let mut config = BalanceConfig::default();
    config.strategy = Strategy::RoundRobin;
    config.health_check.interval = Duration::from_secs(1);
    config.health_check.unhealthy_threshold = 2;
    config.health_check.healthy_threshold = 3;
    let mut b: B = Balance::builder()
        .config(config)
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .health_check(move |key: &usize| {
            let healthy = !(*key == 1 && probe_down.load(Ordering::SeqCst));
            async move { healthy }
        })
        .build()
        .unwrap();
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        b.handle().snapshot().endpoints[1].healthy,
        "one failed probe is not enough"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let snap = b.handle().snapshot();
    assert!(!snap.endpoints[1].healthy && !snap.endpoints[1].passing_health_checks);
    for i in 0..10 {
        assert_eq!(send(&mut b, i).await.unwrap(), 0);
    }
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !b.handle().snapshot().endpoints[1].healthy,
        "two passes are not enough"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(b.handle().snapshot().endpoints[1].healthy);
    let got: Vec<usize> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(send(&mut b, i).await.unwrap());
        }
        v
    };
    assert!(got.contains(&1));
}

#[tokio::test(start_paused = true)]
async fn health_checks_need_a_runtime() {
    let eps = eps(1);
    let err = std::thread::spawn(move || {
        Balance::<usize, Ep, u64>::builder()
            .endpoint(0, eps[0].clone())
            .health_check(|_: &usize| async { true })
            .build()
            .unwrap_err()
    })
    .join()
    .unwrap();
    assert!(matches!(err, Error::NoRuntime { .. }));
}

#[tokio::test(start_paused = true)]
async fn reconfigure_switches_strategy_live() {
    let eps = eps(2);
    let mut b = balance(Strategy::P2cPeakEwma, &eps);
    let handle = b.handle().clone();
    let mut config = handle.config();
    config.strategy = Strategy::RoundRobin;
    handle.reconfigure(&config).unwrap();
    assert_eq!(handle.snapshot().strategy, Strategy::RoundRobin);
    let a = send(&mut b, 0).await.unwrap();
    let c = send(&mut b, 0).await.unwrap();
    assert_ne!(a, c);
    config.outlier.max_ejection_percent = 200;
    let err = handle.reconfigure(&config).unwrap_err();
    assert_eq!(err.field(), "outlier.max_ejection_percent");
    assert_eq!(
        handle.config().outlier.max_ejection_percent,
        50,
        "rejected config changes nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn publishes_to_a_health_signal() {
    let eps = eps(2);
    eps[1].set_failing(true);
    let signal = HealthSignal::new();
    let mut reader = signal.subscribe();
    let mut b: B = Balance::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::RoundRobin)
                .build()
                .unwrap(),
        )
        .health(signal)
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .build()
        .unwrap();
    for i in 0..4 {
        let _ = send(&mut b, i).await;
    }
    let stats = reader.read();
    assert_eq!(stats.calls(), 4);
    assert_eq!(stats.failure_rate(), Some(0.5));
}

#[tokio::test(start_paused = true)]
async fn endpoints_from_discover() {
    let list = tower::discover::ServiceList::new(vec![Ep::new(0), Ep::new(1)]);
    let mut b: B = Balance::from_discover(list, BalanceConfig::default()).unwrap();
    tokio::task::yield_now().await;
    assert_eq!(b.handle().len(), 2);
    let got = send(&mut b, 0).await.unwrap();
    assert!(got < 2);
}
