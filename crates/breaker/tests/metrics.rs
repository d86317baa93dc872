//! The breaker's metrics, read back from an in-memory recorder: calls by outcome,
//! rejections, state gauge, transitions, rate gauges and the duration histogram.

use std::time::Duration;

use tower::{service_fn, Layer, Service, ServiceExt};
use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer, Window};
use tower_prism_core::metrics::breaker as m;
use tower_prism_testkit::metrics::Capture;

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
    let state = format!("{}{{name=orders}}", m::STATE);
    let rate = format!("{}{{name=orders}}", m::FAILURE_RATE);

    call!(false).unwrap();
    assert_eq!(memory.gauge(&rate), 0.0);
    call!(true).unwrap_err();
    assert_eq!(memory.gauge(&rate), 0.5);
    call!(true).unwrap_err();
    call!(true).unwrap_err(); // 3 of 4: open
    assert_eq!(memory.gauge(&state), 1.0);
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
    assert_eq!(memory.gauge(&state), 0.0);
    assert_eq!(memory.gauge(&rate), 0.0, "a fresh window shows no failures");
    for (from, to) in [("open", "half_open"), ("half_open", "closed")] {
        let key = format!(
            "{}{{name=orders,from={from},to={to}}}",
            m::TRANSITIONS_TOTAL
        );
        assert_eq!(memory.counter(&key), 1, "{key}");
    }
}
