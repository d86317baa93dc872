//! Where a retry-after hint comes from: a response ([`ResponseHint`]) or an error
//! ([`ErrorHint`]).

use std::time::Duration;

/// Reads a "retry after" hint from a retryable response (for HTTP, the `Retry-After`
/// header: [`RetryAfterHeader`](crate::RetryAfterHeader)). Implemented by [`NoHint`] and by any
/// closure `Fn(&Res) -> Option<Duration>`.
pub trait ResponseHint<Res> {
    /// How long the response asks the caller to wait before retrying.
    fn retry_after(&self, response: &Res) -> Option<Duration>;
}

/// Responses carry no hint (the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoHint;

impl<Res> ResponseHint<Res> for NoHint {
    #[inline]
    fn retry_after(&self, _: &Res) -> Option<Duration> {
        None
    }
}

impl<F, Res> ResponseHint<Res> for F
where
    F: Fn(&Res) -> Option<Duration>,
{
    fn retry_after(&self, response: &Res) -> Option<Duration> {
        self(response)
    }
}

/// Reads a "retry after" hint from an error, e.g. a rate limiter's `RateLimited {
/// retry_after }` or a breaker's `CircuitOpen { retry_after }`. A plain function so that
/// this crate depends on neither; the `tower-prism` facade passes its `retry_after_hint`.
pub type ErrorHint = fn(&(dyn std::error::Error + 'static)) -> Option<Duration>;
