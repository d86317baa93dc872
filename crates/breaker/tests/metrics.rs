//! The breaker's metrics, read back from an in-memory recorder: calls by outcome,
//! rejections, one 0/1 state gauge per state, transitions, ratio gauges and the duration
//! histogram.

use std::time::Duration;

use tower::{service_fn, Layer, Service, ServiceExt};
use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer, Window};
use tower_prism_core::metrics::breaker as m;
use tower_prism_testkit::metrics::Capture;

/// The value of every `prism_breaker_state` series of the breaker `orders`, in the order
/// of `m::STATES`.
fn states(memory: &Capture) -> Vec<f64> {
    m::STATES
        .iter()
        .map(|s| memory.gauge(&format!("{}{{name=orders,state={s}}}", m::STATE)))
        .collect()
}

/// The states whose series is 1 must be exactly `[expected]`.
fn assert_state(memory: &Capture, expected: &str) {
    let on: Vec<&str> = m::STATES
        .iter()
        .zip(states(memory))
        .filter(|(_, v)| *v == 1.0)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(on, [expected], "series: {:?}", states(memory));
    assert_eq!(states(memory).iter().sum::<f64>(), 1.0, "the others are 0");
}

#[tokio::test(start_paused = true)]
async fn metrics_follow_calls_and_transitions() {
    let memory = Capture::default();
    metrics::set_global_recorder(memory.clone()).expect("the only recorder of this binary");
    let config = BreakerConfig::builder()
        .window(Window::Count { size: 4 })
        .minimum_calls(4)
        .wait_duration(Duration::from_secs(1))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::builder(config)
        .name("orders")
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|fail: bool| async move {
        if fail {
            Err("down")
        } else {
            Ok(())
        }
    }));
    macro_rules! call {
        ($fail:expr) => {
            svc.ready().await.unwrap().call($fail).await
        };
    }
    let rate = format!("{}{{name=orders}}", m::FAILURE_RATIO);
    assert_state(&memory, "closed"); // every series is there before the first call

    call!(false).unwrap();
    assert_eq!(memory.gauge(&rate), 0.0);
    call!(true).unwrap_err();
    assert_eq!(memory.gauge(&rate), 0.5);
    call!(true).unwrap_err();
    call!(true).unwrap_err(); // 3 of 4: open
    assert_state(&memory, "open");
    call!(false).unwrap_err(); // rejected
    assert_eq!(
        memory.counter(&format!(
            "{}{{name=orders,outcome=success}}",
            m::CALLS_TOTAL
        )),
        1
    );
    assert_eq!(
        memory.counter(&format!(
            "{}{{name=orders,outcome=failure}}",
            m::CALLS_TOTAL
        )),
        3
    );
    assert_eq!(
        memory.counter(&format!("{}{{name=orders}}", m::REJECTED_TOTAL)),
        1
    );
    assert_eq!(
        memory
            .samples(&format!("{}{{name=orders}}", m::CALL_DURATION_SECONDS))
            .len(),
        4
    );
    assert_eq!(
        memory.counter(&format!(
            "{}{{name=orders,from=closed,to=open}}",
            m::TRANSITIONS_TOTAL
        )),
        1
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    call!(false).unwrap(); // the probe closes it again
    assert_state(&memory, "closed");
    assert_eq!(memory.gauge(&rate), 0.0, "a fresh window shows no failures");
    for (from, to) in [("open", "half_open"), ("half_open", "closed")] {
        let key = format!(
            "{}{{name=orders,from={from},to={to}}}",
            m::TRANSITIONS_TOTAL
        );
        assert_eq!(memory.counter(&key), 1, "{key}");
    }
}

#[test]
fn manual_control_moves_the_state_series() {
    let memory = Capture::default();
    let config = BreakerConfig::default();
    let breaker = metrics::with_local_recorder(&memory, || {
        tower_prism_breaker::Breaker::new("orders", &config).unwrap()
    });
    let state_series = |memory: &Capture| {
        memory
            .registered()
            .into_iter()
            .filter(|k| k.starts_with(m::STATE))
            .count()
    };
    assert_eq!(
        state_series(&memory),
        m::STATES.len(),
        "one series per state"
    );
    assert_state(&memory, "closed");

    breaker.force_open();
    assert_state(&memory, "forced_open");
    breaker.force_open(); // the same state again: still exactly one series at 1
    assert_state(&memory, "forced_open");
    breaker.disable();
    assert_state(&memory, "disabled");
    breaker.metrics_only();
    assert_state(&memory, "metrics_only");
    breaker.reset();
    assert_state(&memory, "closed");

    // Calls and transitions after the build register no new state series.
    let permit = breaker.acquire().unwrap();
    breaker.record(permit, tower_prism_core::Outcome::Success);
    assert_eq!(state_series(&memory), m::STATES.len());
}
