//! tower-resilience's middleware (its 0.14 sub-crates), composed as its composition guide
//! shows for a client of a fleet of backends: `RateLimiter` -> `Bulkhead` -> `Retry` (with
//! a token-bucket budget) -> round robin over the endpoints, each behind its own
//! `CircuitBreaker` -> `TimeLimiter` per attempt.
//!
//! Real mode only: its circuit breaker and retry budget read `std::time::Instant`, so on
//! the simulated mode's paused tokio clock their waits would run on wall time.
//!
//! Each layer has its own error type that hides the inner error from `source()`; the
//! stack unwraps them at every layer, so an upstream error passes through unchanged and a
//! layer's own refusal becomes a [`Rejected`] the report counts by reason.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower::util::{BoxCloneService, BoxCloneSyncService};
use tower::{service_fn, BoxError, Layer, ServiceExt};
use tower_resilience_bulkhead::{BulkheadError, BulkheadLayer, BulkheadServiceError};
use tower_resilience_circuitbreaker::{
    CircuitBreakerError, CircuitBreakerLayer, SlidingWindowType,
};
use tower_resilience_ratelimiter::{RateLimiterLayer, RateLimiterServiceError};
use tower_resilience_retry::{ExponentialRandomBackoff, RetryBudgetBuilder, RetryLayer};
use tower_resilience_timelimiter::{TimeLimiterError, TimeLimiterLayer};

use crate::load::Client;
use crate::upstream::{EndpointService, Request, Response};

/// Every setting of this stack, for the report.
pub const SETTINGS: &str = "\
its 0.14 sub-crates (the umbrella crate 0.13 still pins their 0.13 releases), in the order \
of its composition guide, outermost first: `RateLimiterLayer::burst(1000/s, +100)` (a token \
bucket at the upstream's capacity, 100 requests of burst credit, waiting at most the \
preset's 100 ms for a token, then `rate limited`); `Bulkhead(64, reject_when_full)` (about \
2x the upstream's 30 slots, refusing at once rather than queueing, as tower's `LoadShed` \
over `ConcurrencyLimit(64)`); `Retry` of errors, 5xx and 429, at most 3 attempts (its \
default), `ExponentialRandomBackoff(100 ms, x2, randomization 0.5)` (its default 100 ms \
base, randomised against the thundering herd), withdrawing from a token-bucket budget of \
200 retries/s (20 % of the capacity, the ratio of tower's and tower-prism's budgets) with \
its default 100 tokens of burst; a round robin over the endpoints (tower-resilience has no \
load balancer: its `WeightedRouter` splits canary traffic, its outlier detection ejects but \
does not pick), each endpoint behind its own `CircuitBreaker` (failure rate 50 %, its default, over a \
time window of 1 s, about 330 calls per endpoint: its default count window of 100 calls is \
not a sliding one in 0.14, it tallies every call since the last state change, so in the \
`outage` scenario (healthy twice as long before as the outage lasts) it never opens; at least 20 calls; 1 s \
open, not its 30 s default, which would outlast a real-mode outage; 5 calls half-open; 5xx \
answers, errors and timeouts count as failures) over a `TimeLimiter(300 ms)` per attempt (10x the mean service \
time, as tower's `Timeout`, cancelling the attempt). No outer time limiter: the client's \
own 1 s deadline is one. Its adaptive concurrency limiter is left out: it only waits in \
`poll_ready` (no rejection mode), so under open-loop load every request would queue there \
until the client's deadline before the bulkhead could refuse it, and its own guide says to \
avoid it when the capacity is known (here 30 slots).";

/// tower-resilience's per-attempt timeout (10x the upstream's mean service time).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);
/// The bulkhead's limit: about 2x the upstream's 30 slots, as tower's concurrency limit.
const BULKHEAD_LIMIT: usize = 64;
/// The rate limiter's burst credit on top of the sustained rate.
const RATE_BURST: usize = 100;
/// Attempts per request, the first included (the retry crate's default).
const MAX_ATTEMPTS: usize = 3;
/// The retry backoff's first interval (the retry crate's default).
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// How far each backoff interval is randomised (0.5: between 50 % and 150 %).
const BACKOFF_RANDOMIZATION: f64 = 0.5;
/// The share of the upstream's capacity the retry budget refills per second.
const BUDGET_RATIO: f64 = 0.2;
/// The retry budget's burst (the token bucket's default).
const BUDGET_BURST: usize = 100;
/// The circuit breaker's time window: about 330 calls per endpoint at full load. Its
/// default count window is not used: in 0.14 it tallies every call since the last state
/// change rather than the last 100, so after a healthy start a dead endpoint takes as many
/// failures as it had successes before the circuit opens.
const BREAKER_WINDOW: Duration = Duration::from_secs(1);
/// Calls the circuit breaker needs before it judges the failure rate.
const BREAKER_MINIMUM_CALLS: usize = 20;
/// How long an open circuit refuses calls before it probes again.
const BREAKER_OPEN: Duration = Duration::from_secs(1);
/// Probe calls allowed while half-open.
const BREAKER_HALF_OPEN_CALLS: usize = 5;

/// A refusal by one of tower-resilience's layers (rather than an upstream failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The rate limiter found no token within its wait.
    RateLimited,
    /// The bulkhead was full.
    BulkheadFull,
    /// The endpoint's circuit breaker was open.
    CircuitOpen,
    /// The time limiter cut an attempt off.
    Timeout,
}

impl Rejected {
    /// The reason in the report's "Failures by reason".
    pub fn reason(self) -> &'static str {
        match self {
            Rejected::RateLimited => "rate limited (ratelimiter)",
            Rejected::BulkheadFull => "bulkhead full (bulkhead)",
            Rejected::CircuitOpen => "circuit open (circuitbreaker)",
            Rejected::Timeout => "timeout (timelimiter)",
        }
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Rejected {}

/// A request the retry layer can clone (it needs `Clone`, which `http::Request` is not):
/// each clone copies the head and replays the body.
struct Replayable(Request);

impl Clone for Replayable {
    fn clone(&self) -> Self {
        let request = &self.0;
        // The lab's bodies are empty and replayable; a body past its replay limit would be
        // a bug in the load generator, not a case to recover from.
        let body = request
            .body()
            .try_clone()
            .expect("the lab's request bodies are replayable");
        let mut copy = http::Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        Replayable(copy)
    }
}

/// Whether an answer is a failure worth retrying or counting against a circuit.
fn failed_answer(response: &Response) -> bool {
    response.status().is_server_error() || response.status().as_u16() == 429
}

fn from_time_limiter(error: TimeLimiterError<BoxError>) -> BoxError {
    match error {
        TimeLimiterError::Timeout => Rejected::Timeout.into(),
        TimeLimiterError::Inner(e) => e,
    }
}

fn from_breaker(error: CircuitBreakerError<BoxError>) -> BoxError {
    match error {
        CircuitBreakerError::OpenCircuit => Rejected::CircuitOpen.into(),
        CircuitBreakerError::Inner(e) => e,
    }
}

fn from_bulkhead(error: BulkheadServiceError<BoxError>) -> BoxError {
    match error {
        BulkheadServiceError::Bulkhead(
            BulkheadError::BulkheadFull { .. } | BulkheadError::Timeout,
        ) => Rejected::BulkheadFull.into(),
        BulkheadServiceError::Bulkhead(other) => other.into(),
        BulkheadServiceError::Inner(e) => e,
    }
}

fn from_rate_limiter(error: RateLimiterServiceError<BoxError>) -> BoxError {
    match error {
        RateLimiterServiceError::RateLimited => Rejected::RateLimited.into(),
        RateLimiterServiceError::Inner(e) => e,
    }
}

/// One endpoint behind its own circuit breaker over a per-attempt time limiter.
fn guarded(endpoint: EndpointService) -> EndpointService {
    let time_limited = TimeLimiterLayer::builder()
        .timeout_duration(ATTEMPT_TIMEOUT)
        .cancel_running_future(true)
        .build()
        .layer(endpoint)
        .map_err(from_time_limiter);
    let breaker = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_type(SlidingWindowType::TimeBased)
        .sliding_window_duration(BREAKER_WINDOW)
        .minimum_number_of_calls(BREAKER_MINIMUM_CALLS)
        .wait_duration_in_open(BREAKER_OPEN)
        .permitted_calls_in_half_open(BREAKER_HALF_OPEN_CALLS)
        .failure_classifier(|result: &Result<Response, BoxError>| match result {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        })
        .build()
        .expect("valid circuit breaker settings");
    BoxCloneSyncService::new(breaker.layer(time_limited).map_err(from_breaker))
}

/// Round robin over `endpoints`: each call goes to the next one in turn.
fn round_robin(
    endpoints: Vec<EndpointService>,
) -> BoxCloneSyncService<Replayable, Response, BoxError> {
    let endpoints = Arc::new(endpoints);
    let next = Arc::new(AtomicUsize::new(0));
    BoxCloneSyncService::new(service_fn(move |Replayable(request): Replayable| {
        let index = next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        endpoints[index].clone().oneshot(request)
    }))
}

/// The stack over `endpoints`, rate-limited at `capacity` requests/s.
pub fn build(endpoints: Vec<EndpointService>, capacity: f64) -> Client {
    let balanced = round_robin(endpoints.into_iter().map(guarded).collect());
    let budget = RetryBudgetBuilder::new()
        .token_bucket()
        .tokens_per_second(capacity * BUDGET_RATIO)
        .max_tokens(BUDGET_BURST)
        .build()
        .expect("valid retry budget settings");
    let backoff = ExponentialRandomBackoff::new(BACKOFF_BASE, BACKOFF_RANDOMIZATION)
        .expect("valid backoff settings");
    let retry = RetryLayer::<Replayable, Response, BoxError>::builder()
        .max_attempts(MAX_ATTEMPTS)
        .backoff(backoff)
        .retry_on(|_: &BoxError| true)
        .retry_on_response(failed_answer)
        .budget(budget)
        .build();
    let retried = retry
        .layer(balanced)
        .map_request(|request: Request| Replayable(request));
    let bulkhead = BulkheadLayer::builder()
        .max_concurrent_calls(BULKHEAD_LIMIT)
        .reject_when_full()
        .build()
        .expect("valid bulkhead settings");
    let shielded = bulkhead.layer(retried).map_err(from_bulkhead);
    let rate = capacity.round().max(1.0) as usize;
    let limiter = RateLimiterLayer::burst(rate, RATE_BURST)
        .build()
        .expect("valid rate limiter settings");
    BoxCloneService::new(limiter.layer(shielded).map_err(from_rate_limiter))
}
