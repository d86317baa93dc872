// Shared mock endpoint for the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::{BoxError, Service, ServiceExt};
use tower_prism_balance::{Balance, BalanceConfig, Error, Strategy};

/// A test endpoint: answers its id after `delay`, fails while `failing`, and is ready only
/// while `ready` (waking parked callers when it becomes ready).
#[derive(Clone)]
pub struct Ep {
    pub id: usize,
    pub delay: Arc<Mutex<Duration>>,
    pub failing: Arc<AtomicBool>,
    pub ready: Arc<AtomicBool>,
    pub hits: Arc<AtomicUsize>,
    wakers: Arc<Mutex<Vec<Waker>>>,
}

impl Ep {
    pub fn new(id: usize) -> Self {
        Ep {
            id,
            delay: Arc::new(Mutex::new(Duration::from_millis(1))),
            failing: Arc::new(AtomicBool::new(false)),
            ready: Arc::new(AtomicBool::new(true)),
            hits: Arc::new(AtomicUsize::new(0)),
            wakers: Arc::default(),
        }
    }

    pub fn with_delay(self, delay: Duration) -> Self {
        *self.delay.lock().unwrap() = delay;
        self
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        if ready {
            for w in self.wakers.lock().unwrap().drain(..) {
                w.wake();
            }
        }
    }
}

impl Service<u64> for Ep {
    type Response = usize;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<usize, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            self.wakers.lock().unwrap().push(cx.waker().clone());
            Poll::Pending
        }
    }

    fn call(&mut self, _: u64) -> Self::Future {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        let failing = self.failing.clone();
        let id = self.id;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            if failing.load(Ordering::SeqCst) {
                Err(std::io::Error::other("endpoint failed"))
            } else {
                Ok(id)
            }
        })
    }
}

/// The balancer most tests use: keyed by endpoint id, requests are `u64`.
pub type B = Balance<usize, Ep, u64>;

/// `n` endpoints with ids `0..n`.
pub fn eps(n: usize) -> Vec<Ep> {
    (0..n).map(Ep::new).collect()
}

/// A balancer with `strategy` over `eps`.
pub fn balance(strategy: Strategy, eps: &[Ep]) -> B {
    balance_with(
        BalanceConfig::builder().strategy(strategy).build().unwrap(),
        eps,
    )
}

/// A balancer with `config` over `eps`.
pub fn balance_with(config: BalanceConfig, eps: &[Ep]) -> B {
    Balance::builder()
        .config(config)
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .build()
        .unwrap()
}

/// One call through the balancer: the id of the endpoint that answered.
pub async fn send(b: &mut B, req: u64) -> Result<usize, BoxError> {
    b.ready().await?.call(req).await
}

/// The endpoint count of a [`Error::NoHealthyEndpoint`], if `err` is one.
pub fn no_healthy(err: &BoxError) -> Option<usize> {
    match err.downcast_ref::<Error>() {
        Some(Error::NoHealthyEndpoint { endpoints }) => Some(*endpoints),
        _ => None,
    }
}
