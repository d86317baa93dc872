//! [`GrpcPushback`]: a gRPC response's `grpc-retry-pushback-ms`, as a retry-after hint.

use std::time::Duration;

use http::Response;
use tower_prism_core::{grpc_status, Pushback};

use crate::hint::ResponseHint;

/// Reads a gRPC response's `grpc-retry-pushback-ms` (gRFC A6) as the retry stage's hint,
/// as [`RetryAfterHeader`](crate::RetryAfterHeader) reads `Retry-After`.
///
/// - a non-negative number of milliseconds: the retry waits at least that long (its
///   backoff if longer), and gives up at once if it is over `max_retry_after`;
/// - a negative or malformed value means "do not retry": the hint is `Duration::MAX`,
///   which is over any `max_retry_after`, so the retry gives up with that response
///   ([`GrpcClassifier`](tower_prism_core::GrpcClassifier) already classifies such a
///   response as a failure that is not retried; this covers other classifiers). To a
///   hedged call it means no further hedge nor retry, while the attempts in flight run on
///   (gRFC A6);
/// - a response with no `grpc-status` (a proxy's HTTP 503) is read as HTTP: its
///   `Retry-After`.
///
/// With `honor_retry_after = false` the retry stage ignores every hint, this one too.
///
/// ```
/// use std::time::Duration;
/// use tower_prism_retry::{GrpcPushback, ResponseHint};
///
/// let answer = |pushback: &str| {
///     http::Response::builder()
///         .header("grpc-status", "14")
///         .header("grpc-retry-pushback-ms", pushback)
///         .body(())
///         .unwrap()
/// };
/// assert_eq!(GrpcPushback.retry_after(&answer("250")), Some(Duration::from_millis(250)));
/// assert_eq!(GrpcPushback.retry_after(&answer("-1")), Some(Duration::MAX));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcPushback;

impl<B> ResponseHint<Response<B>> for GrpcPushback {
    fn retry_after(&self, response: &Response<B>) -> Option<Duration> {
        let headers = response.headers();
        if grpc_status(headers).is_none() {
            return tower_prism_core::internal::response_retry_after(response);
        }
        match Pushback::of(headers)? {
            Pushback::After(wait) => Some(wait),
            Pushback::DoNotRetry => Some(Duration::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(headers: &[(&str, &str)], status: u16) -> Response<()> {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn pushback_is_read_and_do_not_retry_is_longer_than_any_wait() {
        let hint = |h: &[(&str, &str)]| GrpcPushback.retry_after(&answer(h, 200));
        let unavailable = ("grpc-status", "14");
        assert_eq!(hint(&[unavailable]), None);
        assert_eq!(
            hint(&[unavailable, ("grpc-retry-pushback-ms", "1500")]),
            Some(Duration::from_millis(1500))
        );
        for bad in ["-5", "x", "", "1e3"] {
            assert_eq!(
                hint(&[unavailable, ("grpc-retry-pushback-ms", bad)]),
                Some(Duration::MAX),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_response_without_grpc_status_is_read_as_http() {
        let shed = answer(&[("retry-after", "3")], 503);
        assert_eq!(
            GrpcPushback.retry_after(&shed),
            Some(Duration::from_secs(3))
        );
        // a pushback header alone is not a gRPC answer
        let odd = answer(&[("grpc-retry-pushback-ms", "-1")], 200);
        assert_eq!(GrpcPushback.retry_after(&odd), None);
    }
}
