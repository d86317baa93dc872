//! [`Error`]: every rejection of the limiters in this crate.

use std::time::Duration;

/// Why a limiter refused a request: the rate limiter ([`rate`](crate::rate)), the
/// concurrency limiter ([`concurrency`](crate::concurrency)) or the Redis rate limiter
/// (`redis`). Services return it boxed in a
/// [`tower::BoxError`](https://docs.rs/tower/latest/tower/type.BoxError.html); downcast to
/// read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No token was free (and the request could not wait for one).
    #[error("rate limited: retry after {retry_after:?}")]
    RateLimited {
        /// When the bucket will have refilled enough for this request.
        retry_after: Duration,
    },
    /// No token was free and the wait queue is full of requests at least as important.
    #[error("rate limited: the wait queue is full; retry after {retry_after:?}")]
    QueueFull {
        /// When a token could come free for this request, after the waiters served before
        /// it have taken theirs.
        retry_after: Duration,
    },
    /// The request waited in the queue and was pushed out by a more important one.
    #[error(
        "rate limited: shed from the wait queue for a higher-priority request; retry after \
         {retry_after:?}"
    )]
    Shed {
        /// When a token could come free for this request, after the waiters served before
        /// it have taken theirs.
        retry_after: Duration,
    },
    /// The request waited `max_wait` in the queue without getting a token.
    #[error("rate limited: no token after waiting {waited:?}")]
    QueueTimeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The request's weight is larger than the burst, so it could never be admitted.
    #[error("request weight {weight} exceeds the burst of {burst}")]
    WeightExceedsBurst {
        /// The request's weight.
        weight: u32,
        /// The limiter's burst.
        burst: u32,
    },
    /// `limit` requests were already in flight and the concurrency limiter does not wait,
    /// or `max_waiters` requests already wait.
    #[error("concurrency limit of {limit} reached")]
    ConcurrencyLimited {
        /// The limit at the time.
        limit: u32,
    },
    /// The request waited the concurrency limiter's `max_wait` without a permit coming
    /// free.
    #[error("concurrency limit reached; no permit after waiting {waited:?}")]
    ConcurrencyTimeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The Redis rate limiter could not decide (Redis did not answer in time, or answered
    /// with an error) and its failure policy is to fail closed. The text is redacted.
    #[error("redis rate limiter backend unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// When to try again, if the limiter knows: for a rate limit's refusal (`RateLimited`,
    /// `QueueFull`, `Shed`), when a token could come free for the request.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after }
            | Error::QueueFull { retry_after }
            | Error::Shed { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The `reason` label value used in the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::RateLimited { .. } => "rate",
            Error::QueueFull { .. } => "queue_full",
            Error::Shed { .. } => "shed",
            Error::QueueTimeout { .. } => "timeout",
            Error::WeightExceedsBurst { .. } => "weight",
            Error::ConcurrencyLimited { .. } => "concurrency",
            Error::ConcurrencyTimeout { .. } => "concurrency_timeout",
            Error::Unavailable(_) => "backend",
        }
    }
}
