//! Shared by the fault stage's tests: a service that counts the calls reaching it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_prism_fault::Error;
use tower_service::Service;

/// Answers every request with itself, at once, counting the calls that reach it.
#[derive(Debug, Clone, Default)]
pub struct Counting {
    pub calls: Arc<AtomicU64>,
}

impl Counting {
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<R> Service<R> for Counting {
    type Response = R;
    type Error = Infallible;
    type Future = Ready<Result<R, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok(req))
    }
}

/// What one call came back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    Answer,
    Injected,
    Aborted,
    Other,
}

impl Got {
    pub fn of<T>(result: &Result<T, tower_prism_core::BoxError>) -> Got {
        match result {
            Ok(_) => Got::Answer,
            Err(e) => match e.downcast_ref::<Error>() {
                Some(Error::Injected) => Got::Injected,
                Some(Error::Aborted { .. }) => Got::Aborted,
                _ => Got::Other,
            },
        }
    }
}
