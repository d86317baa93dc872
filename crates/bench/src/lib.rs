//! Shared helpers for the tower-prism benchmarks: the services benchmarked against.
//!
//! The benchmarks themselves live in `benches/`, one file per component, each measuring
//! tower-prism beside the tower built-in or peer crate doing the same job, in the same run.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use tower_service::Service;

/// A service that is always ready and answers every request with itself, at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Noop;

impl<R> Service<R> for Noop {
    type Response = R;
    type Error = Infallible;
    type Future = Ready<Result<R, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        ready(Ok(req))
    }
}

/// A current-thread tokio runtime for benchmarks that drive futures one at a time.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}
