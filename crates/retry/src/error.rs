//! The retry layer's error.

use std::time::Duration;

use tower_prism_core::BoxError;

/// Why a retried call failed. Returned inside a [`BoxError`]; downcast to read it.
///
/// Only calls that ended with an error are wrapped: a retryable *response* (a 503) is
/// returned as it is when retrying stops. Errors that were never retried (not retryable,
/// fatal, or `max_attempts = 1`) are returned unwrapped, and so is an error whose
/// retry-after hint is longer than `max_retry_after` (or than what is left of
/// `max_elapsed`): it still carries that hint for the caller to pass on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Every attempt failed; `last` is the last attempt's error.
    #[error("all {attempts} attempts failed: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: BoxError,
    },
    /// The retry budget was empty, so the failure was not retried.
    #[error("retry budget exhausted after {attempts} attempt(s): {last}")]
    BudgetExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: BoxError,
    },
    /// The next retry would have started after `max_elapsed`.
    #[error("retry deadline of {max_elapsed:?} reached after {attempts} attempt(s): {last}")]
    DeadlineExceeded {
        /// Attempts made.
        attempts: u32,
        /// The configured `max_elapsed`.
        max_elapsed: Duration,
        /// The last attempt's error.
        #[source]
        last: BoxError,
    },
    /// The caller's deadline (a [`RequestDeadline`](tower_prism_core::RequestDeadline) a
    /// deadline stage above set) left no time for another attempt after its backoff, so
    /// the failure was returned at once.
    #[error("no time left before the caller's deadline after {attempts} attempt(s): {last}")]
    CallerDeadline {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: BoxError,
    },
    /// One attempt took longer than `attempt_timeout` (a retryable failure).
    #[error("attempt timed out after {timeout:?}")]
    AttemptTimedOut {
        /// The configured `attempt_timeout`.
        timeout: Duration,
    },
    /// A replayed request body was polled while an earlier attempt still held it.
    #[error("request body is still in use by an earlier attempt")]
    BodyInUse,
    /// A copy of a replayed request body was polled after the body went over its limit.
    #[error("request body was over its replay limit and cannot be sent again")]
    BodyNotReplayable,
    /// The [`ReplayRequest`](crate::ReplayRequest) gave no copy for a retry that its
    /// `can_replay` had allowed (the two answers must agree for one request).
    #[error("the request could not be copied for retry attempt {attempt}: replay refused what can_replay allowed")]
    ReplayRefused {
        /// The attempt that could not be sent.
        attempt: u32,
    },
}

impl Error {
    /// Attempts made before giving up, for the variants that count them.
    pub fn attempts(&self) -> Option<u32> {
        match self {
            Error::RetriesExhausted { attempts, .. }
            | Error::BudgetExhausted { attempts, .. }
            | Error::DeadlineExceeded { attempts, .. }
            | Error::CallerDeadline { attempts, .. } => Some(*attempts),
            _ => None,
        }
    }

    /// The last attempt's error, for the variants that carry one.
    pub fn last(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            Error::RetriesExhausted { last, .. }
            | Error::BudgetExhausted { last, .. }
            | Error::DeadlineExceeded { last, .. }
            | Error::CallerDeadline { last, .. } => Some(last.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_accessors() {
        let e = Error::RetriesExhausted {
            attempts: 3,
            last: "refused".into(),
        };
        assert_eq!(e.to_string(), "all 3 attempts failed: refused");
        assert_eq!(e.attempts(), Some(3));
        assert_eq!(e.last().unwrap().to_string(), "refused");
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(source.to_string(), "refused");
        let e = Error::AttemptTimedOut {
            timeout: Duration::from_millis(5),
        };
        assert_eq!(e.attempts(), None);
        let boxed: BoxError = Box::new(e);
        assert!(boxed.downcast_ref::<Error>().is_some());
    }
}
