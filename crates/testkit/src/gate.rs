//! [`Gate`]: a service whose readiness a test opens, breaks and watches, and
//! [`UpstreamError`], its own error type, to check that an error keeps its type through
//! a stage.

use std::fmt;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

/// The inner service's own error, to check that it still downcasts through a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamError(pub u32);

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream said no ({})", self.0)
    }
}

impl std::error::Error for UpstreamError {}

/// Ready only once [`open`](Self::open) is set, then failing readiness with
/// `UpstreamError(0)` while [`broken`](Self::broken) is set; answers a request of 0 with
/// `UpstreamError(0)` and any other `n` with `n`. Clones share both switches.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    /// Set: the service is ready (unless broken).
    pub open: Arc<AtomicBool>,
    /// Set: readiness fails.
    pub broken: Arc<AtomicBool>,
}

impl Service<u32> for Gate {
    type Response = u32;
    type Error = UpstreamError;
    type Future = Ready<Result<u32, UpstreamError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        if !self.open.load(Ordering::SeqCst) {
            Poll::Pending
        } else if self.broken.load(Ordering::SeqCst) {
            Poll::Ready(Err(UpstreamError(0)))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, n: u32) -> Self::Future {
        ready(if n == 0 { Err(UpstreamError(n)) } else { Ok(n) })
    }
}
