//! Balancer behaviour: readiness, dynamic endpoints, reconfiguration, discovery.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{balance, eps, no_healthy, send, Ep, B};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Service, ServiceExt};
use tower_prism_balance::{Balance, BalanceConfig, Error, Strategy, MAX_ENDPOINTS};

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
async fn endpoints_from_discover() {
    let list = tower::discover::ServiceList::new(vec![Ep::new(0), Ep::new(1)]);
    let mut b: B = Balance::from_discover(list, BalanceConfig::default()).unwrap();
    tokio::task::yield_now().await;
    assert_eq!(b.handle().len(), 2);
    let got = send(&mut b, 0).await.unwrap();
    assert!(got < 2);
}

/// The discovery task ends with the balancer, as its health checks do: it kept the stream,
/// and whatever the stream owns (a watch on a registry, a connection), until the stream
/// yielded again, which one that has nothing more to say never does.
#[tokio::test(start_paused = true)]
async fn dropping_the_balancer_ends_its_discovery_task() {
    use std::sync::{Arc, Mutex};
    use std::task::Poll;
    use tower::discover::Change;

    let owned = Arc::new(());
    let held = owned.clone();
    let first = Mutex::new(Some(Ep::new(0)));
    let quiet_after_one = futures_util::stream::poll_fn(move |_| {
        let _owns = &held;
        match first.lock().unwrap().take() {
            Some(ep) => Poll::Ready(Some(Ok::<_, std::io::Error>(Change::Insert(0, ep)))),
            None => Poll::Pending,
        }
    });
    let b: B = Balance::from_discover(quiet_after_one, BalanceConfig::default()).unwrap();
    tokio::task::yield_now().await;
    assert_eq!(b.handle().len(), 1);
    drop(b);
    tokio::task::yield_now().await;
    assert_eq!(
        Arc::strong_count(&owned),
        1,
        "the stream was dropped with the task"
    );
}

#[tokio::test(start_paused = true)]
async fn a_discover_burst_is_applied_whole() {
    // a first listing of 3,000 endpoints, ready at once: applied in batches of at most
    // 1,024 (one rebuild of the set each), none lost between them
    let list = tower::discover::ServiceList::new((0..3_000).map(Ep::new).collect::<Vec<_>>());
    let b: B = Balance::from_discover(list, BalanceConfig::default()).unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(b.handle().len(), 3_000);
}

#[tokio::test(start_paused = true)]
async fn the_endpoint_cap_is_a_typed_error_and_replacing_at_it_still_works() {
    let over = (0..=MAX_ENDPOINTS).map(|i| (i, Ep::new(i)));
    let refused = Balance::<usize, Ep, u64>::builder().endpoints(over).build();
    match refused {
        Err(Error::Config(e)) => assert_eq!(e.field(), "endpoints"),
        other => panic!("expected a config error, got {:?}", other.err()),
    }

    let full = (0..MAX_ENDPOINTS).map(|i| (i, Ep::new(i)));
    let mut b = Balance::<usize, Ep, u64>::builder()
        .endpoints(full)
        .build()
        .unwrap();
    let handle = b.handle();
    assert_eq!(handle.len(), MAX_ENDPOINTS);
    let e = handle.add(MAX_ENDPOINTS, Ep::new(0)).unwrap_err();
    assert_eq!(e.field(), "endpoints");
    assert_eq!(handle.len(), MAX_ENDPOINTS, "a refused add changes nothing");
    // a key already held is replaced in place, at the cap too
    handle.add(7, Ep::new(70_000)).unwrap();
    assert_eq!(handle.len(), MAX_ENDPOINTS);
    assert_eq!(handle.keys()[7], 7);
    assert!(handle.remove(&0));
    assert!(!handle.remove(&0));
    handle.add(MAX_ENDPOINTS, Ep::new(0)).unwrap();
    assert_eq!(handle.len(), MAX_ENDPOINTS);
    let answered = b.ready().await.unwrap().call(0).await.unwrap();
    assert!(answered < MAX_ENDPOINTS || answered == 70_000, "{answered}");
}
