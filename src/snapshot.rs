//! [`Snapshot`]: what a policy's stages look like now.

/// What a [`ReliabilityLayer`](crate::ReliabilityLayer)'s stages look like now (see
/// [`ReliabilityLayer::snapshot`](crate::ReliabilityLayer::snapshot)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The fallback's counts, when the policy has a `fallback` table.
    pub fallback: Option<crate::fallback::FallbackSnapshot>,
    /// The rate limiter's state, when the stack has one.
    pub rate_limit: Option<tower_prism_limit::rate::RateLimitSnapshot>,
    /// The concurrency limiter's state, when the stack has one.
    pub concurrency_limit: Option<tower_prism_limit::concurrency::ConcurrencySnapshot>,
    /// The deadline stage's counts and settings, when the policy has a `deadline` table.
    pub deadline: Option<tower_prism_deadline::DeadlineSnapshot>,
    /// The circuit breaker's state, when the stack has one.
    pub circuit_breaker: Option<tower_prism_breaker::BreakerSnapshot>,
    /// The retry stage's settings and budget, when the stack has one.
    pub retry: Option<tower_prism_retry::RetrySnapshot>,
    /// The fault stage's counts, when the policy has a `fault` table (without one the
    /// stage injects nothing and has nothing to report).
    pub fault: Option<tower_prism_fault::FaultSnapshot>,
    /// Whether a breaker reported the upstream's circuit open on the shared health signal.
    pub circuit_open: bool,
    /// Balancers stacked with [`ReliabilityLayer::balanced`](crate::ReliabilityLayer::balanced)
    /// and still running (their handles give per-endpoint snapshots); the policy does not
    /// keep a balancer alive once its user dropped it.
    pub balancers: usize,
}
