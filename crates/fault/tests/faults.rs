//! The fault stage when user code panics while a fault is being injected: the status
//! builder (a closure given to `status_with`), or the service's `clone` (a delayed call
//! takes the ready service and leaves a clone). The panic propagates; the call's place
//! under `max_active_faults` comes back, and the next faults are injected as before.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::StatusCode;
use tower::{Layer, Service, ServiceExt};
use tower_prism_fault::{FaultConfig, FaultLayer, LatencyFault, StatusFault};

mod common;
use common::Counting;

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn a_panicking_status_builder_gives_the_place_back() {
    let config = FaultConfig::builder()
        .seed(3)
        .status(StatusFault::new(1.0, 503))
        .latency(LatencyFault::fixed(1.0, MS * 10))
        .max_active_faults(1)
        .build()
        .unwrap();
    let panic_next = Arc::new(AtomicBool::new(true));
    let armed = panic_next.clone();
    let layer = FaultLayer::builder(config)
        .status_with(move |status: StatusCode| {
            assert!(
                !armed.swap(false, Ordering::SeqCst),
                "the status builder panicked"
            );
            Some(status.as_u16())
        })
        .build()
        .unwrap();
    let handle = layer.handle().clone();
    let inner = Counting::default();
    let mut svc = layer.layer(inner.clone());
    svc.ready().await.unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| drop(svc.call(1u16)))).is_err());
    let snap = handle.snapshot();
    assert_eq!(snap.active_faults, 0, "the place came back");
    assert_eq!(snap.injected_statuses, 0, "nothing was injected");
    // The next call gets the place (the limit is one), and its status after the delay.
    let answer = svc.ready().await.unwrap().call(2);
    assert_eq!(handle.snapshot().active_faults, 1);
    assert_eq!(answer.await.unwrap(), 503);
    let snap = handle.snapshot();
    assert_eq!((snap.active_faults, snap.injected_statuses), (0, 1));
    assert_eq!(inner.calls(), 0, "a status fault never reaches the service");
}

/// A service whose `clone` panics once it is armed.
#[derive(Default)]
struct CloneBomb {
    inner: Counting,
    armed: Arc<AtomicBool>,
}

impl Clone for CloneBomb {
    fn clone(&self) -> Self {
        assert!(
            !self.armed.swap(false, Ordering::SeqCst),
            "the service panicked when cloned"
        );
        CloneBomb {
            inner: self.inner.clone(),
            armed: self.armed.clone(),
        }
    }
}

impl Service<u32> for CloneBomb {
    type Response = u32;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<u32, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<u32>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: u32) -> Self::Future {
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_panicking_when_cloned_for_a_delay_gives_the_place_back() {
    let config = FaultConfig::builder()
        .seed(5)
        .latency(LatencyFault::fixed(1.0, MS * 10))
        .max_active_faults(1)
        .build()
        .unwrap();
    let layer = FaultLayer::from_config(&config).unwrap();
    let handle = layer.handle().clone();
    let bomb = CloneBomb::default();
    let (armed, inner) = (bomb.armed.clone(), bomb.inner.clone());
    let mut svc = layer.layer(bomb);
    svc.ready().await.unwrap();
    armed.store(true, Ordering::SeqCst);
    assert!(catch_unwind(AssertUnwindSafe(|| drop(svc.call(1)))).is_err());
    assert_eq!(handle.snapshot().active_faults, 0, "the place came back");
    let delayed = svc.ready().await.unwrap().call(2);
    assert_eq!(handle.snapshot().active_faults, 1);
    assert_eq!(delayed.await.unwrap(), 2);
    assert_eq!(handle.snapshot().active_faults, 0);
    assert_eq!(inner.calls(), 1);
}
