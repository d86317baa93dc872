//! What a call's result means: success, a (retryable) failure, or fatal; and how long
//! the upstream asked to be left alone.

use std::time::Duration;

use http::StatusCode;

/// The meaning of one call's result, shared by every tower-prism component.
///
/// The breaker counts failures, the retry layer retries only retryable failures, the
/// balancer ejects endpoints that keep failing and the adaptive limiter slows down when
/// failures rise. All of them ask a [`Classify`] for this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call worked (or failed in a way that says nothing about the upstream's health,
    /// such as a 404).
    Success,
    /// The call failed. `retryable` says whether trying again may help.
    Failure {
        /// Whether a retry may succeed.
        retryable: bool,
    },
    /// The call failed in a way that no retry can mend (bad credentials, a malformed request).
    Fatal,
}

impl Outcome {
    /// A retryable failure.
    pub const RETRYABLE: Outcome = Outcome::Failure { retryable: true };
    /// A failure that should not be retried.
    pub const NOT_RETRYABLE: Outcome = Outcome::Failure { retryable: false };

    /// `true` for [`Outcome::Success`].
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// `true` for any failure, fatal or not.
    pub fn is_failure(self) -> bool {
        !self.is_success()
    }

    /// `true` only for `Failure { retryable: true }`.
    pub fn is_retryable(self) -> bool {
        matches!(self, Outcome::Failure { retryable: true })
    }

    /// A short, bounded label for metrics: `success`, `failure`, `failure_not_retryable` or `fatal`.
    pub fn as_label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure { retryable: true } => "failure",
            Outcome::Failure { retryable: false } => "failure_not_retryable",
            Outcome::Fatal => "fatal",
        }
    }
}

/// Decides what a service's result means.
///
/// Implemented by [`DefaultClassifier`] (errors are retryable failures, every response a
/// success), [`HttpClassifier`] (by status code) and by any closure
/// `Fn(Result<&Res, &E>) -> Outcome`, so users override it in one line:
///
/// ```
/// use tower_prism_core::{Classify, Outcome};
///
/// let classify = |r: Result<&u16, &std::io::Error>| match r {
///     Ok(code) if *code >= 500 => Outcome::RETRYABLE,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::Fatal,
/// };
/// assert_eq!(classify.classify(Ok(&503)), Outcome::RETRYABLE);
/// assert_eq!(classify.classify(Ok(&200)), Outcome::Success);
/// ```
///
/// A classifier may also read how long a failed result asks the caller to wait
/// ([`retry_after`](Classify::retry_after)): [`HttpClassifier`] reads a 429's or 503's
/// `Retry-After` header, and the circuit breaker opens for that long when such a failure
/// opens it.
pub trait Classify<Res, E> {
    /// Classifies one result.
    fn classify(&self, result: Result<&Res, &E>) -> Outcome;

    /// How long `result` asks the caller to wait before calling again (an HTTP
    /// `Retry-After`), if it says. Asked only for a failure that opens a circuit breaker,
    /// never for a success. Default: `None`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_prism_core::{Classify, HttpClassifier};
    ///
    /// let shed = http::Response::builder()
    ///     .status(503)
    ///     .header("retry-after", "2")
    ///     .body(())
    ///     .unwrap();
    /// let hint = Classify::<_, std::io::Error>::retry_after(&HttpClassifier, Ok(&shed));
    /// assert_eq!(hint, Some(Duration::from_secs(2)));
    /// ```
    fn retry_after(&self, result: Result<&Res, &E>) -> Option<Duration> {
        let _ = result;
        None
    }
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        self(result)
    }
}

/// The classifier for any service: `Ok` is a success, `Err` a retryable failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl<Res, E> Classify<Res, E> for DefaultClassifier {
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::RETRYABLE,
        }
    }
}

/// The classifier for services that answer with
/// [`http::Response`](https://docs.rs/http/1/http/response/struct.Response.html).
///
/// - `Err` (connection refused, timeout...) is a retryable failure;
/// - 408, 429 and 5xx are failures, all retryable except 501 (Not Implemented) and
///   505 (HTTP Version Not Supported), which no retry can mend;
/// - every other status, 4xx included, is a success: the upstream is healthy and answered.
///
/// Its [`retry_after`](Classify::retry_after) reads the `Retry-After` header of a 429 or
/// 503 response (delta-seconds or an HTTP-date; an invalid value is ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpClassifier;

impl HttpClassifier {
    /// Classifies a bare status code with the rules above.
    pub fn status(status: StatusCode) -> Outcome {
        match status.as_u16() {
            501 | 505 => Outcome::NOT_RETRYABLE,
            408 | 429 | 500..=599 => Outcome::RETRYABLE,
            _ => Outcome::Success,
        }
    }
}

impl<B, E> Classify<http::Response<B>, E> for HttpClassifier {
    fn classify(&self, result: Result<&http::Response<B>, &E>) -> Outcome {
        match result {
            Ok(response) => Self::status(response.status()),
            Err(_) => Outcome::RETRYABLE,
        }
    }

    fn retry_after(&self, result: Result<&http::Response<B>, &E>) -> Option<Duration> {
        crate::internal::response_retry_after(result.ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(code: u16) -> http::Response<()> {
        http::Response::builder().status(code).body(()).unwrap()
    }

    #[test]
    fn default_classifier_fails_errors_only() {
        let c = DefaultClassifier;
        assert_eq!(Classify::<u8, ()>::classify(&c, Ok(&1)), Outcome::Success);
        assert_eq!(
            Classify::<u8, ()>::classify(&c, Err(&())),
            Outcome::RETRYABLE
        );
    }

    #[test]
    fn http_classifier_follows_the_design_table() {
        let c = HttpClassifier;
        let cases = [
            (200, Outcome::Success),
            (204, Outcome::Success),
            (301, Outcome::Success),
            (400, Outcome::Success),
            (401, Outcome::Success),
            (404, Outcome::Success),
            (408, Outcome::RETRYABLE),
            (429, Outcome::RETRYABLE),
            (500, Outcome::RETRYABLE),
            (501, Outcome::NOT_RETRYABLE),
            (502, Outcome::RETRYABLE),
            (503, Outcome::RETRYABLE),
            (504, Outcome::RETRYABLE),
            (505, Outcome::NOT_RETRYABLE),
        ];
        for (code, expected) in cases {
            let got = Classify::<_, ()>::classify(&c, Ok(&response(code)));
            assert_eq!(got, expected, "status {code}");
        }
        let err: Result<&http::Response<()>, &&str> = Err(&"refused");
        assert_eq!(c.classify(err), Outcome::RETRYABLE);
    }

    #[test]
    fn http_classifier_reads_retry_after_of_429_and_503() {
        let c = HttpClassifier;
        let shed = |code: u16| {
            http::Response::builder()
                .status(code)
                .header(http::header::RETRY_AFTER, "2")
                .body(())
                .unwrap()
        };
        let two = Some(Duration::from_secs(2));
        assert_eq!(Classify::<_, ()>::retry_after(&c, Ok(&shed(503))), two);
        assert_eq!(Classify::<_, ()>::retry_after(&c, Ok(&shed(429))), two);
        assert_eq!(Classify::<_, ()>::retry_after(&c, Ok(&shed(500))), None);
        assert_eq!(Classify::<_, ()>::retry_after(&c, Ok(&response(503))), None);
        let err: Result<&http::Response<()>, &&str> = Err(&"refused");
        assert_eq!(c.retry_after(err), None);
        // closures and the default classifier never say
        let closure = |_: Result<&u8, &()>| Outcome::RETRYABLE;
        assert_eq!(closure.retry_after(Ok(&1)), None);
        assert_eq!(
            Classify::<u8, ()>::retry_after(&DefaultClassifier, Err(&())),
            None
        );
    }

    #[test]
    fn outcome_helpers() {
        assert!(Outcome::Success.is_success());
        assert!(Outcome::Fatal.is_failure());
        assert!(!Outcome::Fatal.is_retryable());
        assert!(Outcome::RETRYABLE.is_retryable());
        assert!(!Outcome::NOT_RETRYABLE.is_retryable());
        assert_eq!(Outcome::NOT_RETRYABLE.as_label(), "failure_not_retryable");
    }
}
