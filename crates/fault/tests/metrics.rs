//! `prism_fault_injected_total{name, reason}`, read back from an in-memory recorder:
//! registered when the layer is built, counted per injected fault.

use std::convert::Infallible;
use std::time::Duration;

use tower::{service_fn, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::metrics::fault as m;
use tower_prism_fault::{FaultConfig, FaultLayer, HttpStatus, LatencyFault, StatusFault};
use tower_prism_testkit::metrics::Capture;

#[tokio::test(start_paused = true)]
async fn injected_faults_are_counted_by_reason() {
    let memory = Capture::default();
    metrics::set_global_recorder(memory.clone()).expect("the only recorder of this binary");
    let config = FaultConfig::builder()
        .seed(21)
        .error(0.2)
        .abort(0.2)
        .status(StatusFault::new(0.2, 502))
        .latency(LatencyFault::fixed(0.3, Duration::from_millis(5)))
        .build()
        .unwrap();
    let layer = FaultLayer::builder(config)
        .name("orders")
        .status_with(HttpStatus)
        .build()
        .unwrap();
    let key = |reason: &str| format!("{}{{name=orders,reason={reason}}}", m::INJECTED_TOTAL);
    // registered at build, before any call
    for reason in ["error", "abort", "status", "latency"] {
        assert_eq!(memory.counter(&key(reason)), 0);
    }
    let mut svc = layer.layer(service_fn(|_: ()| async {
        Ok::<_, Infallible>(http::Response::new(()))
    }));
    for _ in 0..500 {
        let _ = svc.ready().await.unwrap().call(()).await;
    }
    let snap = layer.handle().snapshot();
    assert_eq!(memory.counter(&key("error")), snap.injected_errors);
    assert_eq!(memory.counter(&key("abort")), snap.injected_aborts);
    assert_eq!(memory.counter(&key("status")), snap.injected_statuses);
    assert_eq!(memory.counter(&key("latency")), snap.injected_latency);
    for n in [
        snap.injected_errors,
        snap.injected_aborts,
        snap.injected_statuses,
        snap.injected_latency,
    ] {
        assert!(n > 50, "{snap:?}");
    }
}
