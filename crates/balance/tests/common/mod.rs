// Shared mock endpoint for the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::Service;

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
