//! The upstream, classifier and helpers the breaker's service tests share.

// Each test file uses its own part of this.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::sleep;
use tower::BoxError;
use tower::{Layer, Service, ServiceExt};
use tower_prism_breaker::{
    BreakerConfig, BreakerConfigBuilder, CircuitBreaker, CircuitBreakerLayer,
    CircuitBreakerLayerBuilder, Error, State, Window,
};
use tower_prism_core::Outcome;

/// What the upstream does with a request.
#[derive(Debug, Clone, Copy)]
pub enum Req {
    Ok,
    Fail,
    NotRetryable,
    Fatal,
    /// Succeeds after this many milliseconds.
    Slow(u64),
    /// Fails after this many milliseconds.
    SlowFail(u64),
}

#[derive(Debug)]
pub enum Fail {
    Retryable,
    NotRetryable,
    Fatal,
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for Fail {}

#[derive(Clone)]
pub struct Upstream {
    pub calls: Arc<AtomicUsize>,
}

impl Service<Req> for Upstream {
    type Response = ();
    type Error = Fail;
    type Future = Pin<Box<dyn Future<Output = Result<(), Fail>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Fail>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match req {
                Req::Ok => Ok(()),
                Req::Fail => Err(Fail::Retryable),
                Req::NotRetryable => Err(Fail::NotRetryable),
                Req::Fatal => Err(Fail::Fatal),
                Req::Slow(ms) => {
                    sleep(Duration::from_millis(ms)).await;
                    Ok(())
                }
                Req::SlowFail(ms) => {
                    sleep(Duration::from_millis(ms)).await;
                    Err(Fail::Retryable)
                }
            }
        })
    }
}

pub fn classify(result: Result<&(), &Fail>) -> Outcome {
    match result {
        Ok(()) => Outcome::Success,
        Err(Fail::Retryable) => Outcome::RETRYABLE,
        Err(Fail::NotRetryable) => Outcome::NOT_RETRYABLE,
        Err(Fail::Fatal) => Outcome::Fatal,
    }
}

pub type Classifier = fn(Result<&(), &Fail>) -> Outcome;
pub type Svc = CircuitBreaker<Upstream, Classifier>;

pub fn builder(config: BreakerConfig) -> CircuitBreakerLayerBuilder<Classifier> {
    CircuitBreakerLayer::builder(config).classify(classify as Classifier)
}

pub fn layer(config: BreakerConfig) -> CircuitBreakerLayer<Classifier> {
    builder(config).build().unwrap()
}

pub fn make(config: BreakerConfigBuilder) -> (Svc, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(config.build().unwrap()).layer(Upstream {
        calls: calls.clone(),
    });
    (svc, calls)
}

pub fn base() -> BreakerConfigBuilder {
    BreakerConfig::builder()
        .window(Window::Count { size: 4 })
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .wait_duration(Duration::from_secs(10))
        .permitted_calls_in_half_open(1)
}

pub async fn call(svc: &mut Svc, req: Req) -> Result<(), BoxError> {
    svc.ready().await?.call(req).await
}

/// The `retry_after` of a rejection, or `None` for any other result.
pub fn rejection(result: &Result<(), BoxError>) -> Option<Duration> {
    match result {
        Err(e) => e.downcast_ref::<Error>().and_then(Error::retry_after),
        Ok(()) => None,
    }
}

pub async fn run(svc: &mut Svc, reqs: &[Req]) {
    for &req in reqs {
        let result = call(svc, req).await;
        assert_eq!(rejection(&result), None, "{req:?} was rejected");
    }
}

/// Trips a `base()` breaker open with four failures.
pub async fn trip(svc: &mut Svc) {
    run(svc, &[Req::Fail; 4]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Open);
}
