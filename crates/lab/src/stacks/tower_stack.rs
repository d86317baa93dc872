//! tower 0.5's own middleware, configured as its docs show:
//! `LoadShed` -> `ConcurrencyLimit` -> `Buffer` -> `RateLimit` -> `Retry` (with a
//! `TpsBudget`) -> `Timeout` per attempt -> `Buffer` -> p2c `Balance` over `PeakEwma`.

use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Duration;

use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwma};
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder};

use crate::load::Client;
use crate::upstream::{EndpointService, Request, Response};

/// Every setting of this stack, for the report.
pub const SETTINGS: &str = "\
`LoadShed` over `ConcurrencyLimit(64)` (about 2x the upstream's 30 slots); `Buffer(1024)` \
to share `RateLimit(capacity / 10 per 100 ms)` (the upstream's capacity, smoothed over \
100 ms periods); `Retry` of 5xx, 429 and errors, at most 3 attempts, no backoff (tower's \
`Retry` has none built in), withdrawing from `TpsBudget::new(10 s, 10/s, 20 %)`, the \
values of tower's own example; `Timeout(300 ms)` per attempt (10x the mean service time); \
`Buffer(1024)` over p2c `Balance` of `PeakEwma(default_rtt 30 ms, decay 10 s, \
CompleteOnResponse)` per endpoint.";

/// The same stack in the [`Suite::Defaults`](crate::scenario::Suite::Defaults) scenarios,
/// for the report.
pub const DEFAULTS_SETTINGS: &str = "\
as in the lab, but `ConcurrencyLimit(16)` (2x the upstream's 8 slots, the fixed limit of \
issue 15) and `RateLimit(40 per 100 ms)` (the upstream's 400 requests/s): `LoadShed` over \
`ConcurrencyLimit(16)`; `Buffer(1024)`; `RateLimit`; `Retry` of 5xx, 429 and errors, at most \
3 attempts, no backoff, withdrawing from `TpsBudget::new(10 s, 10/s, 20 %)`; `Timeout(300 ms)` \
per attempt; `Buffer(1024)` over p2c `Balance` of `PeakEwma` (one endpoint).";

/// Retries failures (errors, 5xx, 429) while the budget allows, at most 3 attempts.
#[derive(Clone)]
struct BudgetedRetry {
    budget: Arc<TpsBudget>,
    attempts_left: u32,
}

impl Policy<Request, Response, BoxError> for BudgetedRetry {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _request: &mut Request,
        result: &mut Result<Response, BoxError>,
    ) -> Option<Self::Future> {
        let failed = match result {
            Ok(response) => {
                response.status().is_server_error() || response.status().as_u16() == 429
            }
            Err(_) => true,
        };
        if !failed {
            self.budget.deposit();
            return None;
        }
        if self.attempts_left <= 1 || !self.budget.withdraw() {
            return None;
        }
        self.attempts_left -= 1;
        Some(ready(()))
    }

    fn clone_request(&mut self, request: &Request) -> Option<Request> {
        let body = request.body().try_clone()?;
        let mut copy = http::Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.headers_mut() = request.headers().clone();
        Some(copy)
    }
}

/// The stack over `endpoints`, rate-limited at `capacity` requests/s, at most `limit`
/// requests in flight.
pub fn build(endpoints: Vec<EndpointService>, capacity: f64, limit: usize) -> Client {
    let decay = Duration::from_secs(10).as_nanos() as f64;
    let loaded = endpoints.into_iter().map(|e| {
        PeakEwma::new(
            e,
            Duration::from_millis(30),
            decay,
            CompleteOnResponse::default(),
        )
    });
    let balance = Balance::new(ServiceList::new(loaded.collect::<Vec<_>>()));
    let balanced = Buffer::new(balance, 1024);
    let policy = BudgetedRetry {
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        attempts_left: 3,
    };
    let per_100ms = (capacity / 10.0).round().max(1.0) as u64;
    let limited = ServiceBuilder::new()
        .rate_limit(per_100ms, Duration::from_millis(100))
        .retry(policy)
        .timeout(Duration::from_millis(300))
        .service(balanced);
    let shared = Buffer::new(limited, 1024);
    let client = ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(limit)
        .service(shared);
    BoxCloneService::new(client)
}
