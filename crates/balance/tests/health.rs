//! Passive and active health: outlier ejection, health checks, the shared health signal.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{balance_with, eps, no_healthy, send, Ep, B};
use tokio_test::assert_ready_ok;
use tower::{Service, ServiceExt};
use tower_prism_balance::{Balance, BalanceConfig, Error, OutlierConfig, Strategy};
use tower_prism_core::{HealthSignal, Outcome};

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

/// A round robin over `eps` that ejects after 3 failures in a row, at most half of them.
fn round_robin_ejecting(eps: &[Ep]) -> B {
    balance_with(ejecting(Strategy::RoundRobin, 50), eps)
}

#[tokio::test(start_paused = true)]
async fn ejection_and_restoration() {
    let eps = eps(3);
    eps[1].set_failing(true);
    let mut b = round_robin_ejecting(&eps);
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

/// Every endpoint failing alike is a shared outage, not an outlier: an endpoint ejected
/// then (the cap allows one of three) is back as soon as another endpoint answers again,
/// not after its ejection time, during which the others would carry its share. A
/// regression test: it stayed out for the whole 10 s.
/// A caller waiting for the one endpoint in rotation (not ready) while the other is
/// ejected is woken when the ejection ends, and takes the endpoint that is back. It waited
/// until the endpoint in rotation was ready again: an ejection ends unseen until a pick
/// looks at the endpoint.
#[tokio::test(start_paused = true)]
async fn a_waiting_caller_takes_an_endpoint_back_from_ejection() {
    let eps = eps(2);
    let mut b = round_robin_ejecting(&eps);
    eps[1].set_failing(true);
    for i in 0..10 {
        let _ = send(&mut b, i).await;
    }
    assert!(b.handle().snapshot().endpoints[1].ejected);
    eps[1].set_failing(false);
    eps[0].set_ready(false);
    let mut waiting = tokio_test::task::spawn(b.ready());
    assert!(waiting.poll().is_pending());
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(waiting.is_woken(), "woken when the 10 s ejection ended");
    assert_ready_ok!(waiting.poll());
    drop(waiting);
    assert_eq!(
        send(&mut b, 0).await.unwrap(),
        1,
        "the endpoint back from ejection"
    );
}

/// An ejection over whose endpoint also fails its health checks stays unended (a pick
/// looks at health first): the waiting caller is not woken for it again and again (a
/// timer armed for a time already past fired at once, every poll).
#[tokio::test(start_paused = true)]
async fn a_waiting_caller_does_not_spin_on_an_ejection_held_by_health() {
    let (mut b, eps, passing) = probed(3, 0);
    tokio::time::sleep(Duration::from_millis(10)).await; // the first probes
    eps[1].set_failing(true);
    for i in 0..12 {
        let _ = send(&mut b, i).await;
    }
    assert!(b.handle().snapshot().endpoints[1].ejected);
    passing[1].store(false, Ordering::SeqCst);
    passing[2].store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await; // a round of probes
    eps[0].set_ready(false);
    let mut waiting = tokio_test::task::spawn(b.ready());
    assert!(waiting.poll().is_pending());
    tokio::time::advance(Duration::from_secs(11)).await; // the 10 s ejection is over
    let _ = waiting.poll();
    assert!(waiting.poll().is_pending(), "still nothing usable");
    assert!(!waiting.is_woken(), "woken again at once: spinning");
}

/// An endpoint refusing every call at once, beside healthy ones answering in 50 ms, under
/// the default config (P2C): ejected, and kept out. Its streak ended before the calls the
/// others started with it answered, so its ejection was taken for a shared outage's and
/// ended by their first success: it took 473 of 2,000 calls and was never out for long
/// (its instant failures made it look the fastest to P2C).
#[tokio::test(start_paused = true)]
async fn an_endpoint_failing_at_once_is_ejected_and_stays_out() {
    let eps: Vec<Ep> = (0..3)
        .map(|i| Ep::new(i).with_delay(Duration::from_millis(if i == 0 { 0 } else { 50 })))
        .collect();
    eps[0].set_failing(true);
    let b = balance_with(BalanceConfig::default(), &eps);
    let callers: Vec<_> = (0..20u64)
        .map(|caller| {
            let mut b = b.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    let _ = send(&mut b, caller * 1000 + i).await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let ejections = b.handle().snapshot().endpoints[0].ejections;
    assert!(
        eps[0].hits() <= 20,
        "the refusing endpoint got {} calls ({ejections} ejections)",
        eps[0].hits()
    );
}

#[tokio::test(start_paused = true)]
async fn an_ejection_during_a_shared_outage_ends_with_the_outage() {
    let eps = eps(3);
    let mut b = round_robin_ejecting(&eps);
    for i in 0..6 {
        send(&mut b, i).await.unwrap();
    }
    tokio::time::advance(Duration::from_millis(5)).await;
    for e in &eps {
        e.set_failing(true);
    }
    for i in 0..30 {
        assert!(send(&mut b, i).await.is_err());
    }
    let snap = b.handle().snapshot();
    assert_eq!(snap.healthy(), 2, "the cap still applies: {snap:?}");
    tokio::time::advance(Duration::from_millis(5)).await;
    for e in &eps {
        e.set_failing(false);
    }
    send(&mut b, 0).await.unwrap();
    let snap = b.handle().snapshot();
    assert_eq!(snap.healthy(), 3, "back with the first success: {snap:?}");
    assert!(snap.endpoints.iter().all(|e| e.ejections == 0), "{snap:?}");
    let before: Vec<_> = eps.iter().map(|e| e.hits()).collect();
    for i in 0..30 {
        send(&mut b, i).await.unwrap();
    }
    for (e, before) in eps.iter().zip(before) {
        assert_eq!(e.hits() - before, 10, "every endpoint takes its share");
    }

    // One endpoint failing while the others succeed is an outlier: out for 10 s.
    eps[2].set_failing(true);
    for i in 0..30 {
        let _ = send(&mut b, i).await;
    }
    assert!(b.handle().snapshot().endpoints[2].ejected);
    eps[2].set_failing(false);
    for i in 0..30 {
        send(&mut b, i).await.unwrap();
    }
    assert!(b.handle().snapshot().endpoints[2].ejected);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(!b.handle().snapshot().endpoints[2].ejected);
}

/// In a brownout every endpoint fails a share of its calls at random, and a streak that
/// trips the consecutive-failures rule is chance: ejecting the endpoint it fell on would
/// take a third of the capacity away for the ejection time. A streak at the brownout's
/// start, before the others have failed, may eject; the ejection ends as soon as the
/// others fail as well. A regression test: endpoints were ejected for 10 s, 20 s, ...
#[tokio::test(start_paused = true)]
async fn a_brownout_ejects_no_endpoint_for_long() {
    let eps = eps(3);
    let mut b = round_robin_ejecting(&eps);
    for i in 0..300 {
        send(&mut b, i).await.unwrap();
    }
    let before: Vec<_> = eps.iter().map(|e| e.hits()).collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut failed = 0;
    let brownout: u32 = 3_000;
    for i in 0..u64::from(brownout) {
        // a quarter of the calls fail, at random
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let failing = (seed >> 33).is_multiple_of(4);
        for e in &eps {
            e.set_failing(failing);
        }
        failed += usize::from(send(&mut b, i).await.is_err());
    }
    assert!(
        (600..900).contains(&failed),
        "{failed} of {brownout} failed"
    );
    for (e, before) in eps.iter().zip(before) {
        let share = (e.hits() - before) as f64 / f64::from(brownout);
        assert!(
            share > 0.3,
            "endpoint {} took {:.0} % of the brownout's calls",
            e.id,
            share * 100.0
        );
    }

    // The brownout ends on an unlucky run: three failures in a row for every endpoint.
    // Its endpoints failing like the others, none is ejected (after the brownout, the
    // others would not fail again to show that the ejection was chance).
    for e in &eps {
        e.set_failing(true);
    }
    for i in 0..9 {
        assert!(send(&mut b, i).await.is_err());
    }
    for e in &eps {
        e.set_failing(false);
    }
    let snap = b.handle().snapshot();
    assert_eq!(snap.healthy(), 3, "{snap:?}");
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
    let mut b = round_robin_ejecting(&eps);
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
    // without panic mode (which would route to the ejected endpoints)
    let mut config = ejecting(Strategy::P2cPeakEwma, 100);
    config.healthy_panic_threshold = 0;
    let mut b = balance_with(config, &eps);
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
    // the first round, at once, puts both in rotation
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(b.handle().snapshot().healthy(), 2);
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

/// Endpoints awaiting their first probe get no call, even when they are most of the
/// balancer (Envoy's `ignore_new_hosts_until_first_hc`): a scale-out from one endpoint to
/// three put the balancer below its panic threshold, and panic mode sent 4 of 6 calls to
/// the two new endpoints, dead, before their probes answered. A call made before any
/// probe has answered waits for the verdicts.
#[tokio::test(start_paused = true)]
async fn endpoints_awaiting_their_first_probe_get_no_call() {
    let eps = eps(3);
    let mut config = BalanceConfig::default();
    config.strategy = Strategy::RoundRobin;
    let probe = |key: &usize| {
        let alive = *key == 0;
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            alive
        }
    };
    let mut b: B = Balance::builder()
        .config(config)
        .endpoint(0, eps[0].clone())
        .health_check(probe)
        .build()
        .unwrap();
    // before the first verdict: the call waits for it, then goes to the endpoint it passed
    assert_eq!(send(&mut b, 0).await.unwrap(), 0);
    b.handle().add(1, eps[1].clone()).unwrap();
    b.handle().add(2, eps[2].clone()).unwrap();
    for i in 0..6 {
        assert_eq!(send(&mut b, i).await.unwrap(), 0);
    }
    assert_eq!(eps[1].hits() + eps[2].hits(), 0);
    tokio::time::sleep(Duration::from_millis(200)).await; // their probes fail
    let snapshot = b.handle().snapshot();
    assert_eq!(snapshot.healthy(), 1, "{snapshot:?}");
}

/// A passing health check ends an outlier ejection at once (Envoy's
/// `successful_active_health_check_uneject_host`, on by default): the endpoint sat out the
/// rest of its ejection time though every probe said it was back. Off, it does.
#[tokio::test(start_paused = true)]
async fn a_passing_health_check_ends_an_ejection() {
    for uneject in [true, false] {
        let (mut b, eps, _passing) = probed(3, 0);
        let mut config = b.handle().config();
        config.outlier.successful_active_health_check_uneject_host = uneject;
        b.handle().reconfigure(&config).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await; // the first probes
        eps[1].set_failing(true);
        for i in 0..12 {
            let _ = send(&mut b, i).await;
        }
        assert!(b.handle().snapshot().endpoints[1].ejected);
        eps[1].set_failing(false);
        tokio::time::sleep(Duration::from_millis(1100)).await; // a round of probes
        let endpoint = &b.handle().snapshot().endpoints[1];
        assert_eq!(endpoint.ejected, !uneject, "{endpoint:?}");
        assert_eq!(endpoint.ejections, 1);
        let answered = answered_by(&mut b, 9).await;
        assert_eq!(answered.contains(&1), uneject, "{answered:?}");
    }
}

/// A round robin over `n` endpoints whose probes pass while `passing[key]` says so, probed
/// every second, one result enough to flip.
fn probed(n: usize, panic_threshold: u32) -> (B, Vec<Ep>, Arc<Vec<AtomicBool>>) {
    let eps = eps(n);
    let passing: Arc<Vec<AtomicBool>> = Arc::new((0..n).map(|_| AtomicBool::new(true)).collect());
    let mut config = ejecting(Strategy::RoundRobin, 50);
    config.health_check.interval = Duration::from_secs(1);
    config.health_check.unhealthy_threshold = 1;
    config.health_check.healthy_threshold = 1;
    config.healthy_panic_threshold = panic_threshold;
    let probe_passing = passing.clone();
    let b: B = Balance::builder()
        .config(config)
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .health_check(move |key: &usize| {
            let passes = probe_passing[*key].load(Ordering::SeqCst);
            async move { passes }
        })
        .build()
        .unwrap();
    (b, eps, passing)
}

async fn answered_by(b: &mut B, calls: usize) -> Vec<usize> {
    let mut by = Vec::new();
    for i in 0..calls {
        by.push(send(b, i as u64).await.unwrap());
    }
    by.sort();
    by.dedup();
    by
}

#[tokio::test(start_paused = true)]
async fn every_endpoint_failing_its_health_checks_is_panic_mode_not_an_outage() {
    // a probe gone wrong (a wrong path, say) fails every endpoint: as Envoy's panic
    // threshold, calls spread over all of them instead of all failing
    let (mut b, _eps, passing) = probed(3, 50);
    for p in passing.iter() {
        p.store(false, Ordering::SeqCst);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(b.handle().snapshot().healthy(), 0);
    assert_eq!(answered_by(&mut b, 6).await, [0, 1, 2]);
    // below the threshold (1 of 3 in rotation) too
    passing[0].store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(b.handle().snapshot().healthy(), 1);
    assert_eq!(answered_by(&mut b, 6).await, [0, 1, 2]);
    // at it (2 of 3), health counts again
    passing[1].store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(answered_by(&mut b, 6).await, [0, 1]);
}

#[tokio::test(start_paused = true)]
async fn without_panic_mode_the_survivor_takes_everything() {
    let (mut b, _eps, passing) = probed(3, 0);
    passing[1].store(false, Ordering::SeqCst);
    passing[2].store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(answered_by(&mut b, 6).await, [0]);
    passing[0].store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(no_healthy(&send(&mut b, 0).await.unwrap_err()), Some(3));
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_ejected_and_failing_its_checks_is_out_once() {
    // 1 of 3 out: 2 in rotation, above the 50 % threshold. Counted twice (ejected, and
    // failing its checks), it would read as 1 in rotation and put the balancer in panic
    // mode, sending calls to the endpoint it took out
    let (mut b, eps, passing) = probed(3, 50);
    eps[0].set_failing(true);
    for i in 0..9 {
        let _ = send(&mut b, i).await;
    }
    let snap = b.handle().snapshot();
    assert!(snap.endpoints[0].ejected, "{snap:?}");
    passing[0].store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!b.handle().snapshot().endpoints[0].passing_health_checks);
    assert_eq!(b.handle().snapshot().healthy(), 2);
    assert_eq!(answered_by(&mut b, 6).await, [1, 2]);
}
