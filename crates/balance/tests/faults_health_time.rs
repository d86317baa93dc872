//! What the balancer does when health probes panic or hang, when paused time jumps by days,
//! when a key is removed and re-added while its old calls run, and when callers give up
//! waiting: nothing may be wedged afterwards (no leaked in-flight count, consistent ejection
//! state, a bounded number of parked wakers). Misbehaving endpoints and user callbacks are
//! in `faults_endpoints.rs`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use common::Ep;
use tower::{Service, ServiceExt};
use tower_prism_balance::{Balance, BalanceConfig, OutlierConfig, Strategy};

fn health_checked(probe_interval: Duration) -> BalanceConfig {
    let mut config = BalanceConfig::default();
    config.strategy = Strategy::RoundRobin;
    config.health_check.interval = probe_interval;
    config.health_check.timeout = Duration::from_millis(500);
    config.health_check.unhealthy_threshold = 2;
    config.health_check.healthy_threshold = 2;
    config
}

#[tokio::test(start_paused = true)]
async fn a_panicking_health_probe_fails_that_probe_and_checks_go_on() {
    // 0: the probe function itself panics; 1: the probe's future panics
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let b = Balance::<usize, Ep, u64>::builder()
        .config(health_checked(Duration::from_secs(1)))
        .endpoints((0..3).map(|i| (i, Ep::new(i))))
        .health_check(move |key: &usize| {
            let broken = flag.load(Ordering::SeqCst);
            assert!(!(broken && *key == 0), "the probe function panics");
            let key = *key;
            async move {
                assert!(!(broken && key == 1), "the probe's future panics");
                true
            }
        })
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let snap = b.handle().snapshot();
    let passing: Vec<bool> = snap
        .endpoints
        .iter()
        .map(|e| e.passing_health_checks)
        .collect();
    assert_eq!(passing, [false, false, true], "a panic is a failed probe");
    broken.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.handle().snapshot().healthy(), 3, "the checks went on");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_health_probe_fails_at_its_timeout() {
    let hang = Arc::new(AtomicBool::new(true));
    let flag = hang.clone();
    let b = Balance::<usize, Ep, u64>::builder()
        .config(health_checked(Duration::from_secs(1)))
        .endpoints((0..2).map(|i| (i, Ep::new(i))))
        .health_check(move |key: &usize| {
            let hangs = flag.load(Ordering::SeqCst) && *key == 0;
            async move {
                if hangs {
                    std::future::pending::<()>().await;
                }
                true
            }
        })
        .build()
        .unwrap();
    // two rounds: 1s + 0.5s timeout, then 1s + 0.5s
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let snap = b.handle().snapshot();
    assert!(!snap.endpoints[0].passing_health_checks, "{snap:?}");
    assert!(snap.endpoints[1].passing_health_checks);
    hang.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(b.handle().snapshot().healthy(), 2);
}

#[tokio::test(start_paused = true)]
async fn days_of_paused_time_leave_sane_state() {
    let eps: Vec<Ep> = (0..3).map(Ep::new).collect();
    eps[2].set_failing(true);
    let mut config = health_checked(Duration::from_secs(3600));
    config.outlier = OutlierConfig::builder()
        .consecutive_failures(2)
        .max_ejection_percent(50)
        .build()
        .unwrap();
    config.strategy = Strategy::P2cPeakEwma;
    let probes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = probes.clone();
    let mut b = Balance::<usize, Ep, u64>::builder()
        .config(config)
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .health_check(move |_: &usize| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { true }
        })
        .build()
        .unwrap();
    for i in 0..30 {
        let _ = b.ready().await.unwrap().call(i).await;
    }
    assert!(b.handle().snapshot().endpoints[2].ejected);
    eps[2].set_failing(false);
    for days in [3u64, 40, 50, 400] {
        tokio::time::advance(Duration::from_secs(days * 86_400)).await;
        let before = probes.load(Ordering::SeqCst);
        let snap = b.handle().snapshot();
        assert_eq!(
            snap.healthy(),
            3,
            "ejection over after {days} days: {snap:?}"
        );
        for e in &snap.endpoints {
            assert!(e.latency_ewma < Duration::from_secs(1), "{e:?}");
        }
        let mut seen = [0usize; 3];
        for i in 0..300 {
            seen[b.ready().await.unwrap().call(i).await.unwrap()] += 1;
        }
        assert!(seen.iter().all(|n| *n > 30), "after {days} days: {seen:?}");
        // the health checks still run every hour
        tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
        assert!(probes.load(Ordering::SeqCst) > before, "after {days} days");
        assert!(b
            .handle()
            .snapshot()
            .endpoints
            .iter()
            .all(|e| e.in_flight == 0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_re_added_key_starts_from_zero_while_its_old_calls_finish() {
    let old = Ep::new(0).with_delay(Duration::from_secs(10));
    let mut b = Balance::<usize, Ep, u64>::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::RoundRobin)
                .build()
                .unwrap(),
        )
        .endpoint(0, old.clone())
        .build()
        .unwrap();
    let handle = b.handle().clone();
    let old_calls: Vec<_> = (0..3)
        .map(|i| {
            let mut b = b.clone();
            tokio::spawn(async move { b.ready().await.unwrap().call(i).await })
        })
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(handle.snapshot().endpoints[0].in_flight, 3);
    // the same key, a new endpoint: replaced while the old one's calls are in flight
    handle
        .add(0, Ep::new(0).with_delay(Duration::from_secs(60)))
        .unwrap();
    let snap = handle.snapshot();
    assert_eq!(
        (snap.endpoints[0].in_flight, snap.endpoints[0].requests),
        (0, 0)
    );
    let new_call = tokio::spawn(b.ready().await.unwrap().call(9));
    tokio::task::yield_now().await;
    for c in old_calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(old.hits(), 3);
    let snap = handle.snapshot();
    assert_eq!(
        (snap.endpoints[0].in_flight, snap.endpoints[0].requests),
        (1, 1),
        "the old calls finished on their own endpoint"
    );
    new_call.await.unwrap().unwrap();
    assert_eq!(handle.snapshot().endpoints[0].in_flight, 0);
}

/// Counts the wakers of one task that are still alive somewhere.
struct Parked;

impl std::task::Wake for Parked {
    fn wake(self: Arc<Self>) {}
}

#[tokio::test(start_paused = true)]
async fn callers_that_give_up_waiting_leave_a_bounded_number_of_wakers() {
    // one endpoint, never ready: every caller parks, then gives up (its deadline passes)
    let ep = Ep::new(0);
    ep.set_ready(false);
    let mut b = Balance::<usize, Ep, u64>::builder()
        .endpoint(0, ep.clone())
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..5_000 {
        let task = Arc::new(Parked);
        let waker = Waker::from(task.clone());
        assert!(b.poll_ready(&mut Context::from_waker(&waker)).is_pending());
        tasks.push(Arc::downgrade(&task));
    }
    // the endpoint keeps its own parked wakers (a test double); the balancer's are ours
    ep.set_ready(true);
    let alive = tasks.iter().filter(|t| t.upgrade().is_some()).count();
    assert!(
        alive <= 256,
        "{alive} wakers of callers long gone are still held"
    );
    assert_eq!(b.ready().await.unwrap().call(1).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn one_hanging_probe_holds_back_no_other_endpoints_verdict() {
    // from the second round on, endpoint 0 is black-holed (its probe hangs until the 60 s
    // timeout) and endpoint 1 answers "unhealthy" at once: 1 must leave the rotation at
    // once, not a minute later
    let mut config = health_checked(Duration::from_secs(1));
    config.health_check.timeout = Duration::from_secs(60);
    config.health_check.unhealthy_threshold = 1;
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    let b = Balance::<usize, Ep, u64>::builder()
        .config(config)
        .endpoints((0..2).map(|i| (i, Ep::new(i))))
        .health_check(move |key: &usize| {
            let (key, broken) = (*key, flag.load(Ordering::SeqCst));
            async move {
                if broken && key == 0 {
                    std::future::pending::<()>().await;
                }
                !broken
            }
        })
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.handle().snapshot().healthy(), 2, "the first round passed");
    broken.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let snap = b.handle().snapshot();
    assert!(!snap.endpoints[1].passing_health_checks, "{snap:?}");
    assert!(snap.endpoints[0].passing_health_checks, "still probing");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!b.handle().snapshot().endpoints[0].passing_health_checks);
}

#[tokio::test(start_paused = true)]
async fn a_shorter_probe_interval_applies_at_once() {
    let probes = Arc::new(AtomicUsize::new(0));
    let counted = probes.clone();
    let b = Balance::<usize, Ep, u64>::builder()
        .config(health_checked(Duration::from_secs(3600)))
        .endpoint(0, Ep::new(0))
        .health_check(move |_: &usize| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { true }
        })
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        probes.load(Ordering::SeqCst),
        1,
        "the first round runs at once"
    );
    // a minute into an hour's wait, the interval becomes 10 s: it counts from the last
    // round (the start here), so the next probe is due at once, then every 10 s
    b.handle()
        .reconfigure(&health_checked(Duration::from_secs(10)))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(probes.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(probes.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_balancer_ends_its_health_checks_at_once() {
    let probe_alive = Arc::new(());
    let held = probe_alive.clone();
    let b = Balance::<usize, Ep, u64>::builder()
        .config(health_checked(Duration::from_secs(3600)))
        .endpoint(0, Ep::new(0))
        .health_check(move |_: &usize| {
            let _held = &held;
            async { true }
        })
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(Arc::strong_count(&probe_alive), 2);
    drop(b);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        Arc::strong_count(&probe_alive),
        1,
        "the task ended and dropped the probe without waiting out the hour"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_endpoint_waits_for_its_first_probe_which_runs_at_once() {
    // Envoy's rule: an endpoint joins the rotation on its first passing probe (no
    // threshold), and a dead one never gets a call; probes run at start and on joining,
    // not an interval later
    let dead = Arc::new(AtomicBool::new(false));
    let flag = dead.clone();
    let mut config = health_checked(Duration::from_secs(3600));
    config.strategy = Strategy::RoundRobin;
    let mut b = Balance::<usize, Ep, u64>::builder()
        .config(config)
        .endpoints((0..2).map(|i| (i, Ep::new(i))))
        .health_check(move |key: &usize| {
            let passes = !(*key == 2 && flag.load(Ordering::SeqCst));
            async move { passes }
        })
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        b.handle().snapshot().healthy(),
        2,
        "healthy_threshold 2 skipped"
    );
    dead.store(true, Ordering::SeqCst);
    b.handle().add(2, Ep::new(2)).unwrap();
    let snap = b.handle().snapshot();
    assert!(!snap.endpoints[2].healthy, "out of rotation until probed");
    for i in 0..6 {
        let answered = b.ready().await.unwrap().call(i).await.unwrap();
        assert_ne!(answered, 2);
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!b.handle().snapshot().endpoints[2].passing_health_checks);
    // a live one joins at its first probe
    b.handle().add(3, Ep::new(3)).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(b.handle().snapshot().endpoints[3].healthy);
}
