//! The echo service and helpers the rate limiter's service tests share.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::BoxError;
use tower::{Service, ServiceExt};
use tower_prism_limit::Error;

pub const MS: Duration = Duration::from_millis(1);

/// Echoes its request; ready only while the gate is open.
#[derive(Clone)]
pub struct Echo {
    pub open: Arc<AtomicBool>,
}

impl Echo {
    pub fn new() -> Self {
        Echo {
            open: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl<R> Service<R> for Echo {
    type Response = R;
    type Error = Infallible;
    type Future = Ready<Result<R, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.open.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, req: R) -> Self::Future {
        ready(Ok(req))
    }
}

pub fn error(result: Result<impl std::fmt::Debug, BoxError>) -> Error {
    let err = result.expect_err("expected a rejection");
    err.downcast_ref::<Error>()
        .cloned()
        .unwrap_or_else(|| panic!("not a limiter error: {err}"))
}

pub async fn send<S, R>(svc: &mut S, req: R) -> Result<S::Response, BoxError>
where
    S: Service<R, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}
