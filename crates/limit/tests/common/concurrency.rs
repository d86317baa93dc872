//! The gated service and limiters the concurrency limiter's service tests share.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tower::BoxError;
use tower::Service;
use tower_layer::Layer;
use tower_prism_core::DefaultClassifier;
use tower_prism_limit::concurrency::{
    ConcurrencyConfig, ConcurrencyLimit, ConcurrencyLimitLayer, ConcurrencyLimiter,
};
use tower_prism_limit::Error;

pub type Reply = Result<u32, String>;

/// An inner service whose calls finish when the test says so (each request carries its
/// own reply channel) and which counts the calls running inside it.
#[derive(Clone, Default)]
pub struct Gate {
    pub active: Arc<AtomicUsize>,
    pub peak: Arc<AtomicUsize>,
}

pub struct Leave(pub Arc<AtomicUsize>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service<oneshot::Receiver<Reply>> for Gate {
    type Response = u32;
    type Error = String;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, reply: oneshot::Receiver<Reply>) -> Self::Future {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let leave = Leave(self.active.clone());
        Box::pin(async move {
            let _leave = leave;
            reply.await.unwrap_or_else(|_| Err("sender dropped".into()))
        })
    }
}

impl Gate {
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

pub fn concurrency_error(err: &BoxError) -> &Error {
    err.downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not a Error: {err}"))
}

pub fn fixed(limit: u32) -> ConcurrencyLimitLayer {
    ConcurrencyLimitLayer::from_config(&ConcurrencyConfig::fixed(limit)).unwrap()
}

/// A fixed limit of one permit over a [`Gate`], waiting up to `max_wait` for it: the gate,
/// the shared limiter and the service.
pub fn one_permit_waiting(
    max_wait: Duration,
) -> (
    Gate,
    ConcurrencyLimiter,
    ConcurrencyLimit<Gate, DefaultClassifier>,
) {
    let gate = Gate::default();
    let layer = ConcurrencyLimitLayer::from_config(&{
        let mut c = ConcurrencyConfig::fixed(1);
        c.max_wait = Some(max_wait);
        c
    })
    .unwrap();
    let limiter = layer.handle().clone();
    (gate.clone(), limiter, layer.layer(gate))
}
