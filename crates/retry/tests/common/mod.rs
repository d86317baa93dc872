//! The attempt log, flaky service and layers the retry service tests share.

// Each test file uses its own part of this.
#![allow(dead_code)]

pub mod scripted;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_prism_retry::{Backoff, BudgetConfig, RetryConfig, RetryLayer};

pub const MS: Duration = Duration::from_millis(1);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A budget that neither expires nor runs dry during a test: a one-day window with a
/// floor of 1 retry a second ([`ROOMY`] retries), each first attempt earning half a retry
/// (and successes nothing, so that a test's sums count first attempts only).
pub fn roomy_budget() -> BudgetConfig {
    BudgetConfig::builder()
        .ratio(0.5)
        .success_ratio(0.0)
        .min_per_second(1)
        .window(DAY)
        .build()
        .unwrap()
}

/// What [`roomy_budget`] holds before any call: its floor over its window.
pub const ROOMY: f64 = 86_400.0;

/// A log of when each attempt arrived, shared with the test.
#[derive(Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<Instant>>>);

impl Log {
    pub fn push(&self) -> usize {
        let mut v = self.0.lock().unwrap();
        v.push(Instant::now());
        v.len()
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    /// Offsets of attempts from the first, in ms.
    pub fn offsets(&self) -> Vec<u128> {
        let v = self.0.lock().unwrap();
        v.iter().map(|t| (*t - v[0]).as_millis()).collect()
    }
    /// Gaps between attempts.
    pub fn gaps(&self) -> Vec<Duration> {
        let v = self.0.lock().unwrap();
        v.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// Fails the first `failures` attempts (with an error), then echoes.
pub fn flaky(
    log: Log,
    failures: usize,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(move |n: u32| {
        let attempt = log.push();
        async move {
            if attempt <= failures {
                Err(BoxError::from(format!("failure {attempt}")))
            } else {
                Ok(n)
            }
        }
    })
}

pub fn no_budget() -> BudgetConfig {
    BudgetConfig::builder().enabled(false).build().unwrap()
}

pub async fn run<S: Service<u32, Response = u32, Error = BoxError>>(
    svc: &mut S,
    n: u32,
) -> Result<u32, BoxError> {
    svc.ready().await?.call(n).await
}

pub fn layer(attempts: u32, backoff: Backoff) -> RetryLayer {
    RetryLayer::builder(
        RetryConfig::builder()
            .max_attempts(attempts)
            .backoff(backoff)
            .budget(no_budget())
            .build()
            .unwrap(),
    )
    .build()
    .unwrap()
}
