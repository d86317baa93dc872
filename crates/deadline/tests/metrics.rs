//! `prism_deadline_expired_total{name, reason}`, read back from an in-memory recorder.

use std::time::Duration;

use tower::{service_fn, Layer, Service, ServiceExt};
use tower_prism_core::metrics::deadline::EXPIRED_TOTAL;
use tower_prism_core::{BoxError, RequestDeadline};
use tower_prism_deadline::{DeadlineConfig, DeadlineLayer};
use tower_prism_testkit::metrics::Capture;

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn expiries_are_counted_by_reason() {
    let memory = Capture::default();
    metrics::set_global_recorder(memory.clone()).expect("the only recorder of this binary");
    let config = DeadlineConfig::builder().timeout(MS * 100).build().unwrap();
    let layer = DeadlineLayer::builder(config)
        .name("payments")
        .build()
        .unwrap();
    let policy = format!("{EXPIRED_TOTAL}{{name=payments,reason=policy}}");
    let request = format!("{EXPIRED_TOTAL}{{name=payments,reason=request}}");
    // both registered when the layer is built, before any call
    assert_eq!((memory.counter(&policy), memory.counter(&request)), (0, 0));

    let mut svc = layer.layer(service_fn(|delay_ms: u64| async move {
        tokio::time::sleep(MS * delay_ms as u32).await;
        Ok::<_, BoxError>(())
    }));
    svc.ready().await.unwrap().call(10).await.unwrap();
    svc.ready().await.unwrap().call(500).await.unwrap_err();
    svc.ready().await.unwrap();
    let tighter = RequestDeadline::after(MS * 20);
    tighter.scope(|| svc.call(500)).await.unwrap_err();
    svc.ready().await.unwrap();
    tighter.scope(|| svc.call(500)).await.unwrap_err(); // already expired
    assert_eq!((memory.counter(&policy), memory.counter(&request)), (1, 2));
}
