//! A hedge the budget granted but that was never sent (the service was still getting ready
//! for it) goes back to the budget when the call is dropped: cancelling a call cannot leak
//! retry budget.

use std::future::{pending, Pending};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_retry::{HedgeConfig, RetryConfig, RetryLayer};

/// Ready until `ready` is cleared; every call hangs.
#[derive(Clone)]
struct Hangs {
    ready: Arc<AtomicBool>,
}

impl Service<u32> for Hangs {
    type Response = u32;
    type Error = BoxError;
    type Future = Pending<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _request: u32) -> Self::Future {
        pending()
    }
}

#[tokio::test(start_paused = true)]
async fn a_granted_hedge_never_sent_is_refunded_when_the_call_is_dropped() {
    let config = RetryConfig::builder()
        .hedge(HedgeConfig::fixed(Duration::from_millis(50)))
        .build()
        .unwrap();
    let layer = RetryLayer::from_config(&config).unwrap();
    let ready = Arc::new(AtomicBool::new(true));
    let mut service = layer.layer(Hangs {
        ready: ready.clone(),
    });

    let call = service.ready().await.unwrap().call(1);
    // From now on the service cannot take another request: the hedge, once granted,
    // waits for readiness.
    ready.store(false, Ordering::SeqCst);
    let mut call = Box::pin(call);
    let before_hedge = layer.handle().snapshot().budget_available;
    let timed_out = tokio::time::timeout(Duration::from_millis(100), call.as_mut()).await;
    assert!(timed_out.is_err(), "the call hangs");

    let granted = layer.handle().snapshot();
    assert_eq!(
        granted.hedges_sent, 0,
        "the service never got ready for the hedge"
    );
    assert!(
        granted.budget_available <= before_hedge - 1.0 + 1e-9,
        "the hedge's grant was taken: {before_hedge} -> {}",
        granted.budget_available
    );
    drop(call);
    let after = layer.handle().snapshot();
    assert!(
        (after.budget_available - granted.budget_available - 1.0).abs() < 1e-9,
        "the grant came back: {} -> {}",
        granted.budget_available,
        after.budget_available
    );
}
