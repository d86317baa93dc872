//! Controlling and observing a breaker through the tower service with paused time: force
//! open, disable, metrics only and reset, clones sharing one breaker, hot reconfiguration, snapshots, the
//! health signal, and config errors. The transitions themselves are in `transitions.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{base, builder, call, layer, make, rejection, run, trip, Req, Upstream};
use tokio::time::advance;
use tower::Layer;
use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer, State, Window};
use tower_prism_core::HealthSignal;

#[tokio::test(start_paused = true)]
async fn force_open_disable_and_reset() {
    let (mut svc, calls) = make(base());
    let breaker = svc.handle().unwrap().clone();
    breaker.force_open();
    assert_eq!(breaker.state(), State::ForcedOpen);
    advance(Duration::from_secs(3_600)).await;
    let result = call(&mut svc, Req::Ok).await;
    assert_eq!(rejection(&result), Some(Duration::from_secs(10)));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    breaker.disable();
    assert_eq!(breaker.state(), State::Disabled);
    run(&mut svc, &[Req::Fail; 10]).await;
    let snap = breaker.snapshot();
    assert_eq!((snap.state, snap.calls), (State::Disabled, 0));

    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    trip(&mut svc).await;
    breaker.reset();
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.retry_after),
        (State::Closed, 0, None)
    );
    run(&mut svc, &[Req::Ok]).await;
}

/// resilience4j's `METRICS_ONLY`: calls pass and are counted, from an empty window, past
/// every threshold, the circuit never opening; a reset closes it with the window emptied,
/// and the thresholds act again.
#[tokio::test(start_paused = true)]
async fn metrics_only_counts_every_call_and_never_opens() {
    let (mut svc, calls) = make(
        base()
            .consecutive_failures(2)
            .slow_call_duration(Duration::from_millis(50)),
    );
    let breaker = svc.handle().unwrap().clone();
    run(&mut svc, &[Req::Ok, Req::Fail]).await;
    breaker.metrics_only();
    assert_eq!(breaker.state(), State::MetricsOnly);
    assert_eq!(breaker.snapshot().calls, 0, "counting starts afresh");
    run(&mut svc, &[Req::Fail; 8]).await;
    run(&mut svc, &[Req::Slow(100); 2]).await;
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.failures, snap.slow_calls),
        (State::MetricsOnly, 4, 2, 2),
        "the window of 4 holds the last two failures and the two slow calls"
    );
    assert_eq!((snap.failure_rate, snap.retry_after), (0.5, None));
    assert_eq!(calls.load(Ordering::SeqCst), 12, "no call was rejected");

    breaker.reset();
    let snap = breaker.snapshot();
    assert_eq!((snap.state, snap.calls), (State::Closed, 0));
    run(&mut svc, &[Req::Fail, Req::Fail]).await;
    assert_eq!(
        breaker.state(),
        State::Open,
        "two failures in a row open it again"
    );
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer(base().build().unwrap());
    let upstream = Upstream {
        calls: calls.clone(),
    };
    let mut a = layer.layer(upstream.clone());
    let mut b = layer.clone().layer(upstream);
    let mut c = a.clone();
    assert!(
        a.handle().unwrap().same_as(b.handle().unwrap())
            && a.handle().unwrap().same_as(layer.handle())
    );
    run(&mut a, &[Req::Fail, Req::Fail]).await;
    run(&mut b, &[Req::Fail]).await;
    run(&mut c, &[Req::Fail]).await;
    assert_eq!(layer.handle().state(), State::Open);
    for svc in [&mut a, &mut b, &mut c] {
        assert!(rejection(&call(svc, Req::Ok).await).is_some());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_to_the_running_breaker() {
    let (mut svc, _) = make(base());
    let breaker = svc.handle().unwrap().clone();
    run(&mut svc, &[Req::Ok, Req::Ok, Req::Ok, Req::Fail]).await;
    assert_eq!(breaker.state(), State::Closed);
    let stricter = base().failure_rate_threshold(0.2).build().unwrap();
    breaker.reconfigure(&stricter).unwrap();
    assert_eq!(breaker.config(), stricter);
    run(&mut svc, &[Req::Ok]).await; // window: ok ok fail ok = 0.25 >= 0.2
    assert_eq!(breaker.state(), State::Open);

    // a new window shape is refused as a whole
    let other = base()
        .window(Window::Count { size: 8 })
        .failure_rate_threshold(0.9)
        .build()
        .unwrap();
    let err = breaker.reconfigure(&other).unwrap_err();
    assert_eq!(err.field(), "window");
    assert_eq!(breaker.config(), stricter);

    // a new wait applies to the next opening
    let shorter = base()
        .failure_rate_threshold(0.2)
        .wait_duration(Duration::from_secs(2))
        .build()
        .unwrap();
    breaker.reconfigure(&shorter).unwrap();
    breaker.reset();
    trip(&mut svc).await;
    assert_eq!(
        rejection(&call(&mut svc, Req::Ok).await),
        Some(Duration::from_secs(2))
    );
}

#[tokio::test(start_paused = true)]
async fn snapshot_reports_counts_rates_and_wait() {
    let (mut svc, _) = make(
        base()
            .window(Window::Count { size: 10 })
            .minimum_calls(10)
            .slow_call_duration(Duration::from_millis(10)),
    );
    run(
        &mut svc,
        &[
            Req::Ok,
            Req::Fail,
            Req::Slow(20),
            Req::SlowFail(20),
            Req::Fail,
        ],
    )
    .await;
    let snap = svc.handle().unwrap().snapshot();
    assert_eq!(snap.state, State::Closed);
    assert_eq!((snap.calls, snap.failures, snap.slow_calls), (5, 3, 2));
    assert_eq!(snap.failure_rate, 0.6);
    assert_eq!(snap.slow_call_rate, 0.4);
    assert_eq!(snap.consecutive_failures, 2); // slow failure, failure
    assert_eq!(snap.probes_admitted, 0);
    assert_eq!(snap.retry_after, None);
    run(&mut svc, &[Req::Ok; 5]).await; // 10 calls, 3 failures: stays closed
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    assert_eq!(svc.handle().unwrap().snapshot().consecutive_failures, 0);
    run(&mut svc, &[Req::Fail; 3]).await; // the last 10 now hold 5 failures
    let snap = svc.handle().unwrap().snapshot();
    assert_eq!(snap.state, State::Open);
    assert_eq!(snap.retry_after, Some(Duration::from_secs(10)));
    assert_eq!((snap.calls, snap.failures), (10, 5));
}

#[tokio::test(start_paused = true)]
async fn health_signal_sees_outcomes_and_the_open_circuit() {
    let health = HealthSignal::new();
    let mut reader = health.subscribe();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = builder(base().build().unwrap())
        .health(health.clone())
        .build()
        .unwrap()
        .layer(Upstream { calls });
    run(&mut svc, &[Req::Ok, Req::Fail]).await;
    let stats = reader.read();
    assert_eq!((stats.successes, stats.failures), (1, 1));
    assert!(!health.is_circuit_open());
    run(&mut svc, &[Req::Fail, Req::Fail]).await;
    assert!(health.is_circuit_open());
    advance(Duration::from_secs(10)).await;
    run(&mut svc, &[Req::Ok]).await;
    assert!(!health.is_circuit_open());
}

#[test]
fn config_errors_and_toml_round_trip() {
    let err = BreakerConfig::builder()
        .failure_rate_threshold(1.5)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "failure_rate_threshold");
    assert!(err.to_string().contains("1.5"), "{err}");
    let err = BreakerConfig::builder()
        .window(Window::Count { size: 0 })
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "window.size");
    let err = toml::from_str::<BreakerConfig>(
        "window = { type = \"time\", duration = \"0s\", buckets = 4 }",
    )
    .unwrap()
    .validate()
    .unwrap_err();
    assert_eq!(err.field(), "window.duration");
    // a layer refuses an invalid config (a field set by hand)
    let mut config = BreakerConfig::default();
    config.minimum_calls = 0;
    let err = CircuitBreakerLayer::from_config(&config).unwrap_err();
    assert_eq!(err.field(), "minimum_calls");
    // and so does a running breaker, keeping the config it has
    let layer = CircuitBreakerLayer::from_config(&BreakerConfig::default()).unwrap();
    let err = layer.handle().reconfigure(&config).unwrap_err();
    assert_eq!(err.field(), "minimum_calls");
    assert_eq!(layer.handle().config(), BreakerConfig::default());

    let config = base()
        .consecutive_failures(5)
        .count_fatal(true)
        .build()
        .unwrap();
    let text = toml::to_string(&config).unwrap();
    assert!(text.contains("wait_duration = \"10s\""), "{text}");
    let back: BreakerConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, config);
}

#[tokio::test(start_paused = true)]
async fn state_change_callbacks_see_every_change_and_may_use_the_breaker() {
    use std::sync::Mutex;
    use tower_prism_breaker::StateChange;

    let (mut svc, _) = make(base());
    let breaker = svc.handle().unwrap().clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let reader = breaker.clone();
    breaker.on_state_change(move |change: StateChange| {
        // outside the breaker's locks: reading it here does not deadlock
        assert_eq!(reader.state(), change.to);
        log.lock().unwrap().push((change.from, change.to));
    });
    // a callback that panics changes nothing for the others or the breaker
    breaker.on_state_change(|_| panic!("a bad callback"));
    trip(&mut svc).await;
    advance(Duration::from_secs(10)).await;
    run(&mut svc, &[Req::Ok]).await;
    breaker.force_open();
    breaker.reset();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::Closed),
        ]
    );
    assert_eq!(breaker.state(), State::Closed);
}

/// Callbacks hear the changes in the order they were made, whichever threads made them:
/// a `force_open` made while the callbacks still run for the trip before it is told after
/// the trip. Each thread told its own change once it had made it, so the `force_open`
/// reached the callbacks first, and one keeping the current state kept `Open`.
#[test]
fn state_changes_are_told_in_the_order_they_were_made() {
    use std::sync::{Barrier, Mutex};
    use tower_prism_breaker::{Breaker, StateChange};
    use tower_prism_core::Outcome;

    let breaker = Breaker::new("ordered", &base().build().unwrap()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    // the trip's callback holds on until the main thread has forced the breaker open
    let (tripped, forced) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let (log, tripped2, forced2) = (seen.clone(), tripped.clone(), forced.clone());
    breaker.on_state_change(move |change: StateChange| {
        if change.to == State::Open {
            tripped2.wait();
            forced2.wait();
        }
        log.lock().unwrap().push((change.from, change.to));
    });
    let tripper = {
        let breaker = breaker.clone();
        std::thread::spawn(move || {
            for _ in 0..4 {
                let permit = breaker.acquire().unwrap();
                breaker.record(permit, Outcome::RETRYABLE);
            }
        })
    };
    tripped.wait();
    breaker.force_open();
    forced.wait();
    tripper.join().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (State::Closed, State::Open),
            (State::Open, State::ForcedOpen)
        ]
    );
    assert_eq!(breaker.state(), State::ForcedOpen);
}

/// A callback that drives the breaker hears of its own change after the one it was told,
/// and so do the callbacks after it. The change was told from inside the callback, before
/// the later callbacks heard of the earlier one: they saw `ForcedOpen -> Closed`, then
/// `Closed -> ForcedOpen`, and kept the circuit open.
#[test]
fn a_change_made_by_a_callback_is_told_after_the_one_it_was_told() {
    use std::sync::Mutex;
    use tower_prism_breaker::{Breaker, StateChange};

    let breaker = Breaker::new("reentrant", &base().build().unwrap()).unwrap();
    let driver = breaker.clone();
    breaker.on_state_change(move |change: StateChange| {
        if change.to == State::ForcedOpen {
            driver.reset();
        }
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    breaker.on_state_change(move |change: StateChange| {
        log.lock().unwrap().push((change.from, change.to));
    });
    breaker.force_open();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::Closed)
        ]
    );
    assert_eq!(breaker.state(), State::Closed);
}
