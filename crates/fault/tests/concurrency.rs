//! Calls on several threads while the config flips: each call gets the faults of one
//! whole config (or, when its read keeps overlapping writes, none), never half of two;
//! a call already delayed keeps its faults.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{Counting, Got};
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_fault::{FaultConfig, FaultLayer, LatencyFault};

#[test]
fn a_call_never_sees_half_of_two_configs() {
    // A fails every call at once; B delays every call without failing it. A call that
    // read half of each would be delayed and then fail.
    let fail = FaultConfig::builder().seed(1).error(1.0).build().unwrap();
    let delay = FaultConfig::builder()
        .seed(1)
        .latency(LatencyFault::fixed(1.0, Duration::from_secs(1)))
        .build()
        .unwrap();
    let layer = FaultLayer::from_config(&fail).unwrap();
    let handle = layer.handle().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(3));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let mut svc = layer.layer(Counting::default());
            let (stop, started) = (stop.clone(), started.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                let _enter = rt.enter();
                started.wait();
                let mut seen = [0u32; 3];
                while !stop.load(Ordering::Relaxed) {
                    // the future is not polled: its state says what the call drew
                    let fut = Service::<u64>::call(&mut svc, 0);
                    match format!("{fut:?}").as_str() {
                        "ResponseFuture::Fault" => seen[0] += 1,
                        "ResponseFuture::Delayed" => seen[1] += 1,
                        // a read that kept overlapping writes passes the call through
                        "ResponseFuture::Called" => seen[2] += 1,
                        other => panic!("a torn config: {other}"),
                    }
                }
                seen
            })
        })
        .collect();
    // Flips with a pause between them, as a storm of reloads would come: back to back on
    // an oversubscribed machine, every read of a caller could overlap a write and pass
    // through, and the test would say nothing.
    started.wait();
    for i in 0..4_000 {
        let config = if i % 2 == 0 { &delay } else { &fail };
        handle.reconfigure(config).unwrap();
        std::thread::sleep(Duration::from_micros(20));
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        let seen = caller.join().unwrap();
        assert!(seen[0] + seen[1] > 0, "{seen:?}");
        assert!(
            seen[2] <= seen[0] + seen[1],
            "most calls read a config: {seen:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_delayed_call_keeps_its_faults_through_a_reconfigure() {
    let config = FaultConfig::builder()
        .seed(2)
        .error(1.0)
        .latency(LatencyFault::fixed(1.0, Duration::from_millis(100)))
        .build()
        .unwrap();
    let inner = Counting::default();
    let layer = FaultLayer::from_config(&config).unwrap();
    let mut svc = layer.layer(inner.clone());
    let fut = ServiceExt::<u64>::ready(&mut svc).await.unwrap().call(1);
    let off = FaultConfig::builder().enabled(false).build().unwrap();
    layer.handle().reconfigure(&off).unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(Got::of(&fut.await), Got::Injected);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    // the next call is untouched
    let answer = ServiceExt::<u64>::ready(&mut svc)
        .await
        .unwrap()
        .call(2)
        .await;
    assert_eq!(Got::of(&answer), Got::Answer);
    assert_eq!(inner.calls(), 1);
}
