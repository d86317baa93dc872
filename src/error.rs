//! One error type for the whole stack, and its HTTP mapping.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};
use tower_prism_core::BoxError;
use tower_prism_limit::rate::{RateLimitInfo, RateLimitRejection, X_RATELIMIT_AFTER};

/// What went wrong, in a form a caller can `match` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The rate limiter shed the request (HTTP 429).
    RateLimited,
    /// The concurrency limiter had no free slot, or tower's `LoadShed` shed the call
    /// (HTTP 503).
    ConcurrencyLimited,
    /// The circuit breaker is open and failed the call fast (HTTP 503).
    CircuitOpen,
    /// Every attempt failed, or the retry budget ran out (HTTP 502).
    RetriesExhausted,
    /// A deadline passed: the deadline stage's, a retry attempt's timeout, or tower's
    /// `Timeout` (HTTP 504).
    Timeout,
    /// The balancer had no healthy endpoint to send the request to (HTTP 503), also when
    /// that ended a call's retries.
    NoHealthyEndpoint,
    /// A shared limiter's backend (Redis) could not decide in time and its failure policy
    /// is to reject (HTTP 503).
    LimiterUnavailable,
    /// The inner service failed (HTTP 502).
    Inner,
}

impl ErrorKind {
    /// A short, bounded label (`rate_limited`, `circuit_open`, ...), for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::ConcurrencyLimited => "concurrency_limited",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::RetriesExhausted => "retries_exhausted",
            ErrorKind::Timeout => "timeout",
            ErrorKind::NoHealthyEndpoint => "no_healthy_endpoint",
            ErrorKind::LimiterUnavailable => "limiter_unavailable",
            ErrorKind::Inner => "inner",
        }
    }

    /// The HTTP status a server answers with for this kind of error.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::ConcurrencyLimited
            | ErrorKind::CircuitOpen
            | ErrorKind::NoHealthyEndpoint
            | ErrorKind::LimiterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::RetriesExhausted | ErrorKind::Inner => StatusCode::BAD_GATEWAY,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether the stack itself refused the request (nothing reached the upstream).
    pub fn is_rejection(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::ConcurrencyLimited
                | ErrorKind::CircuitOpen
                | ErrorKind::NoHealthyEndpoint
                | ErrorKind::LimiterUnavailable
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of a tower-prism stack: a [`kind`](Error::kind), an optional retry-after
/// hint, and the original error, which stays downcastable.
///
/// Built from the [`BoxError`] any stage returns with [`Error::from_box`] (or `From`):
///
/// ```
/// use tower_prism::{Error, ErrorKind};
///
/// let err = Error::from_box(Box::new(tower::timeout::error::Elapsed::new()));
/// assert_eq!(err.kind(), ErrorKind::Timeout);
/// assert_eq!(err.status(), http::StatusCode::GATEWAY_TIMEOUT);
///
/// let err = Error::from_box("connection refused".into());
/// assert_eq!(err.kind(), ErrorKind::Inner);
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {source}")]
pub struct Error {
    kind: ErrorKind,
    again: Again,
    // Boxed: rare (HTTP rate-limit rejections only), and keeps `Error` small.
    rate_limit: Option<Box<RateLimitInfo>>,
    #[source]
    source: BoxError,
}

impl Error {
    /// Classifies a boxed error from any stage (or any tower middleware).
    ///
    /// The error itself is tried first, then its [`source`](StdError::source) chain, so a
    /// rejection wrapped by another layer is still recognised. An error that is already an
    /// [`Error`] is returned as it is.
    pub fn from_box(error: BoxError) -> Error {
        let error = match error.downcast::<Error>() {
            Ok(error) => return *error,
            Err(error) => error,
        };
        let mut found = None;
        let mut rate_limit = None;
        let mut cursor: Option<&(dyn StdError + 'static)> = Some(&*error);
        while let Some(e) = cursor {
            if let Some(rejection) = e.downcast_ref::<RateLimitRejection>() {
                rate_limit = Some(Box::new(rejection.info().clone()));
            }
            if let Some(hit) = classify(e) {
                found = Some(hit);
                break;
            }
            cursor = e.source();
        }
        let (kind, again) = found.unwrap_or((ErrorKind::Inner, Again::Unsaid));
        let again = match again {
            Again::After(wait) => Again::After(wait.min(MAX_RETRY_AFTER)),
            again => again,
        };
        Error {
            kind,
            again,
            rate_limit,
            source: error,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// How long the caller should wait before trying again, when the stage said so
    /// (rate limited, circuit open), at most one day: a longer wait (a yearly quota) is
    /// told a day at a time, and no stage can make it absurd. The stage's own error
    /// ([`get_ref`](Error::get_ref)) keeps the exact value.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.again {
            Again::After(wait) => Some(wait),
            Again::Unsaid | Again::Never => None,
        }
    }

    /// Whether the stage said that no retry of this request can ever pass, however long
    /// the caller waits: a rate limiter's
    /// [`WeightExceedsBurst`](crate::limit::Error::WeightExceedsBurst), a request heavier
    /// than the whole burst. Such an error has no [`retry_after`](Error::retry_after), its
    /// HTTP answer no `Retry-After` (RFC 6585 makes it optional on a 429), its gRPC answer
    /// gRFC A6's "do not retry" (`grpc-retry-pushback-ms: -1`), and a retry stage that
    /// honours retry-after hints gives up on it at once (see [`retry_after_hint`]).
    ///
    /// ```
    /// use tower_prism::Error;
    ///
    /// let heavy = tower_prism::limit::Error::WeightExceedsBurst { weight: 20, burst: 10 };
    /// let err = Error::from_box(Box::new(heavy));
    /// assert!(err.is_permanent());
    /// let response: http::Response<String> = err.to_response();
    /// assert_eq!(response.status(), 429);
    /// assert!(response.headers().get("retry-after").is_none());
    /// ```
    pub fn is_permanent(&self) -> bool {
        self.again == Again::Never
    }

    /// The rate limiter's state when an HTTP rate-limit stage (the `http()` and
    /// `http_server()` profiles) refused the call: what the 429's rate-limit headers say.
    pub fn rate_limit(&self) -> Option<&RateLimitInfo> {
        self.rate_limit.as_deref()
    }

    /// The HTTP status for this error (see [`ErrorKind::status`]).
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The original error, for downcasting to a component's own error type.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// The original error.
    pub fn into_inner(self) -> BoxError {
        self.source
    }

    /// An HTTP response for this error: its [`status`](Error::status), a `Retry-After`
    /// header in whole seconds (rounded up, from 1 to 86400) on every 429 and 503 (the
    /// stage's hint, else 1 second) but a [permanent](Error::is_permanent) one, and on any
    /// other status with a hint, the rate-limit
    /// headers of a [`rate_limit`](Error::rate_limit) rejection (`RateLimit-Policy`,
    /// `RateLimit`, `X-RateLimit-Limit`, `X-RateLimit-Remaining` = 0,
    /// `X-RateLimit-Reset`, and `X-RateLimit-After` as `Retry-After`; see
    /// [`RateLimitInfo::write_headers`](crate::limit::rate::RateLimitInfo::write_headers)),
    /// and an empty body.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_prism::Error;
    ///
    /// let err = Error::from_box(Box::new(tower::timeout::error::Elapsed::new()));
    /// let response: http::Response<String> = err.to_response();
    /// assert_eq!(response.status(), 504);
    /// ```
    pub fn to_response<B: Default>(&self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = self.status();
        let status = self.status();
        let shedding =
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
        let wait = match self.again {
            Again::After(wait) => Some(wait),
            // A client told to go away is told when to come back, even by a stage that
            // does not know (a full concurrency limit): soon.
            Again::Unsaid if shedding => Some(DEFAULT_RETRY_AFTER),
            // Not one that can never pass: a client obeying `Retry-After` would come back
            // for ever.
            Again::Unsaid | Again::Never => None,
        };
        if let Some(info) = &self.rate_limit {
            info.write_headers(response.headers_mut());
        }
        if let Some(wait) = wait {
            let seconds = retry_after_value(wait);
            if self.rate_limit.is_some() {
                // tower_governor's name for the same wait, for clients written against it.
                response
                    .headers_mut()
                    .insert(X_RATELIMIT_AFTER.clone(), seconds.clone());
            }
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}

/// How long a stage asked the caller to wait, read from any error in the chain: a rate
/// limiter's `retry_after` (`RateLimited`, `QueueFull`, `Shed`) or a breaker's
/// `CircuitOpen { retry_after }`; `Duration::MAX` for a request no retry can pass (a rate
/// limiter's `WeightExceedsBurst`, see [`Error::is_permanent`]), longer than any
/// `max_retry_after`, as [`GrpcPushback`](crate::retry::GrpcPushback) reads a pushback
/// of "do not retry".
/// The retry stage uses it so it never retries sooner than the stack said; other retry
/// policies can too.
///
/// ```
/// use std::time::Duration;
/// use tower_prism::retry_after_hint;
///
/// let shed = tower_prism::limit::Error::RateLimited { retry_after: Duration::from_millis(80) };
/// assert_eq!(retry_after_hint(&shed), Some(Duration::from_millis(80)));
/// let heavy = tower_prism::limit::Error::WeightExceedsBurst { weight: 20, burst: 10 };
/// assert_eq!(retry_after_hint(&heavy), Some(Duration::MAX));
/// assert_eq!(retry_after_hint(&std::io::Error::other("refused")), None);
/// ```
pub fn retry_after_hint(error: &(dyn StdError + 'static)) -> Option<Duration> {
    match classify_chain(error)?.1 {
        Again::After(wait) => Some(wait),
        Again::Never => Some(Duration::MAX),
        Again::Unsaid => None,
    }
}

/// What a stage said about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Again {
    /// Nothing.
    Unsaid,
    /// Not before this wait.
    After(Duration),
    /// Never: no retry of the same request can pass.
    Never,
}

impl From<Option<Duration>> for Again {
    fn from(wait: Option<Duration>) -> Again {
        wait.map_or(Again::Unsaid, Again::After)
    }
}

/// The first error of the chain that [`classify`] recognises, as it classifies it.
fn classify_chain(error: &(dyn StdError + 'static)) -> Option<(ErrorKind, Again)> {
    let mut cursor = Some(error);
    while let Some(e) = cursor {
        if let Some(hit) = classify(e) {
            return Some(hit);
        }
        cursor = e.source();
    }
    None
}

impl From<BoxError> for Error {
    fn from(error: BoxError) -> Self {
        Error::from_box(error)
    }
}

/// The longest wait an [`Error`] reports and its `Retry-After` header says: one day. A
/// rate limiter with a long period, or any stage with a bad value, cannot make a server
/// answer with a wait no client acts on (or with a number that overflows).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The `Retry-After` of a 429 or 503 whose stage gave no hint.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// `Retry-After` in whole seconds, rounded up (a 200 ms wait is `1`, never `0`), at most
/// [`MAX_RETRY_AFTER`] (86400).
pub(crate) fn retry_after_value(wait: Duration) -> HeaderValue {
    let wait = wait.min(MAX_RETRY_AFTER);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

/// Recognises one error in the chain: the component rejections and tower's own.
fn classify(e: &(dyn StdError + 'static)) -> Option<(ErrorKind, Again)> {
    if e.is::<tower::timeout::error::Elapsed>() {
        return Some((ErrorKind::Timeout, Again::Unsaid));
    }
    if e.is::<tokio::time::error::Elapsed>() {
        return Some((ErrorKind::Timeout, Again::Unsaid));
    }
    // tower's `LoadShed` in front of a full `ConcurrencyLimit` (or any service not ready):
    // shed load, a 503 with Retry-After as this crate's own concurrency limit answers,
    // not an upstream's failure (502).
    if e.is::<tower::load_shed::error::Overloaded>() {
        return Some((ErrorKind::ConcurrencyLimited, Again::Unsaid));
    }
    // A response a fallback handles as a failure: the upstream's own, with its wait.
    if let Some(failed) = e.downcast_ref::<crate::fallback::FailedResponse>() {
        return Some((ErrorKind::Inner, failed.retry_after().into()));
    }
    classify_component(e)
}

/// Recognises a component crate's rejection.
fn classify_component(e: &(dyn StdError + 'static)) -> Option<(ErrorKind, Again)> {
    if let Some(e) = e.downcast_ref::<tower_prism_limit::Error>() {
        use tower_prism_limit::Error as L;
        let kind = match e {
            L::ConcurrencyLimited { .. } | L::ConcurrencyTimeout { .. } => {
                ErrorKind::ConcurrencyLimited
            }
            L::Unavailable(_) => ErrorKind::LimiterUnavailable,
            // Still a rate limit's refusal (429, as governor's `InsufficientCapacity` is
            // one), but no wait will ever admit it.
            L::WeightExceedsBurst { .. } => return Some((ErrorKind::RateLimited, Again::Never)),
            _ => ErrorKind::RateLimited,
        };
        return Some((kind, e.retry_after().into()));
    }
    if e.is::<tower_prism_deadline::Error>() {
        return Some((ErrorKind::Timeout, Again::Unsaid));
    }
    if let Some(e) = e.downcast_ref::<tower_prism_breaker::Error>() {
        return Some((ErrorKind::CircuitOpen, e.retry_after().into()));
    }
    if let Some(e) = e.downcast_ref::<tower_prism_retry::Error>() {
        use tower_prism_retry::Error as R;
        let kind = match e {
            R::RetriesExhausted { last, .. } | R::BudgetExhausted { last, .. } => {
                match classify_chain(last.as_ref()) {
                    // Attempts that all ran out of time (the stage's attempt timeout,
                    // tower's `Timeout` or a deadline below it) are a timeout: 504, as
                    // Envoy answers a per-try timeout with no retries left.
                    Some((ErrorKind::Timeout, _)) => ErrorKind::Timeout,
                    // Retries that ended on the stack's own refusal (the balancer had no
                    // healthy endpoint left) answer as that refusal: a 503 to come back
                    // later, as Envoy's "no healthy upstream", not a 502 blaming an
                    // upstream nothing was sent to.
                    Some((kind, hint)) if kind.is_rejection() => return Some((kind, hint)),
                    _ => ErrorKind::RetriesExhausted,
                }
            }
            R::DeadlineExceeded { .. } | R::AttemptTimedOut { .. } | R::CallerDeadline { .. } => {
                ErrorKind::Timeout
            }
            _ => ErrorKind::Inner,
        };
        return Some((kind, Again::Unsaid));
    }
    if let Some(tower_prism_balance::Error::NoHealthyEndpoint { .. }) =
        e.downcast_ref::<tower_prism_balance::Error>()
    {
        return Some((ErrorKind::NoHealthyEndpoint, Again::Unsaid));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_value(Duration::from_millis(200)), "1");
        assert_eq!(retry_after_value(Duration::ZERO), "1");
        assert_eq!(retry_after_value(Duration::from_secs(3)), "3");
        assert_eq!(retry_after_value(Duration::from_millis(3001)), "4");
    }

    #[test]
    fn retry_after_header_is_capped_at_a_day_and_never_overflows() {
        assert_eq!(retry_after_value(Duration::from_secs(86_400)), "86400");
        assert_eq!(
            retry_after_value(Duration::from_millis(86_400_001)),
            "86400"
        );
        assert_eq!(retry_after_value(Duration::from_secs(31_536_000)), "86400");
        assert_eq!(retry_after_value(Duration::MAX), "86400");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("shed for {0:?}")]
    struct Shed(#[source] tower_prism_limit::Error);

    #[test]
    fn a_stage_error_with_an_absurd_retry_after_maps_to_a_bounded_response() {
        for wait in [Duration::from_secs(31_536_000), Duration::MAX] {
            let shed = tower_prism_limit::Error::RateLimited { retry_after: wait };
            let err = Error::from_box(Box::new(Shed(shed)));
            assert_eq!(err.kind(), ErrorKind::RateLimited);
            assert_eq!(err.retry_after(), Some(MAX_RETRY_AFTER));
            let response: Response<()> = err.to_response();
            assert_eq!(response.status(), 429);
            assert_eq!(response.headers()[header::RETRY_AFTER], "86400");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapper(#[source] tower::timeout::error::Elapsed);

    #[test]
    fn source_chain_is_searched() {
        let err = Error::from_box(Box::new(Wrapper(tower::timeout::error::Elapsed::new())));
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.get_ref().is::<Wrapper>());
    }

    /// tower's `LoadShed` refusing a call is shed load, answered 503 with a Retry-After as
    /// the crate's own concurrency limit: it was an upstream failure (502).
    #[test]
    fn towers_load_shed_is_a_503() {
        let err = Error::from_box(Box::new(tower::load_shed::error::Overloaded::new()));
        assert_eq!(err.kind(), ErrorKind::ConcurrencyLimited);
        let response: http::Response<String> = err.to_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
    }

    #[test]
    fn retries_ending_with_no_healthy_endpoint_are_a_503() {
        let no_endpoint = || -> BoxError {
            Box::new(tower_prism_balance::Error::NoHealthyEndpoint { endpoints: 3 })
        };
        let exhausted = tower_prism_retry::Error::RetriesExhausted {
            attempts: 3,
            last: no_endpoint(),
        };
        let err = Error::from_box(Box::new(exhausted));
        assert_eq!(err.kind(), ErrorKind::NoHealthyEndpoint);
        let response: http::Response<String> = err.to_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");

        let out_of_budget = tower_prism_retry::Error::BudgetExhausted {
            attempts: 2,
            last: no_endpoint(),
        };
        assert_eq!(
            Error::from_box(Box::new(out_of_budget)).kind(),
            ErrorKind::NoHealthyEndpoint
        );
        // an upstream's failure at the end stays the upstream's (502)
        let upstream = tower_prism_retry::Error::RetriesExhausted {
            attempts: 3,
            last: "connection reset".into(),
        };
        assert_eq!(
            Error::from_box(Box::new(upstream)).kind(),
            ErrorKind::RetriesExhausted
        );
    }

    #[test]
    fn retries_whose_attempts_all_timed_out_below_are_a_504() {
        let exhausted =
            |last: BoxError| tower_prism_retry::Error::RetriesExhausted { attempts: 2, last };
        for last in [
            Box::new(tower::timeout::error::Elapsed::new()) as BoxError,
            Box::new(tower_prism_retry::Error::AttemptTimedOut {
                timeout: Duration::from_millis(100),
            }),
        ] {
            let err = Error::from_box(Box::new(exhausted(last)));
            assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
            assert_eq!(err.status(), 504);
        }
    }

    #[test]
    fn an_error_is_not_wrapped_twice() {
        let err = Error::from_box(Box::new(tower::timeout::error::Elapsed::new()));
        let again = Error::from_box(Box::new(err));
        assert_eq!(again.kind(), ErrorKind::Timeout);
        assert!(again.get_ref().is::<tower::timeout::error::Elapsed>());
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_fail_closed_redis_rejection_is_a_503() {
        let err = Error::from_box(Box::new(tower_prism_limit::Error::Unavailable(
            "timed out".into(),
        )));
        assert_eq!(err.kind(), ErrorKind::LimiterUnavailable);
        assert_eq!(err.status(), 503);
        let config = tower_prism_core::ConfigError::new("url", "x", "bad");
        let err = Error::from_box(Box::new(config));
        assert_eq!(err.kind(), ErrorKind::Inner);
    }

    #[test]
    fn statuses_follow_the_design() {
        assert_eq!(ErrorKind::RateLimited.status(), 429);
        assert_eq!(ErrorKind::CircuitOpen.status(), 503);
        assert_eq!(ErrorKind::NoHealthyEndpoint.status(), 503);
        assert_eq!(ErrorKind::LimiterUnavailable.status(), 503);
        assert!(ErrorKind::LimiterUnavailable.is_rejection());
        assert_eq!(ErrorKind::RetriesExhausted.status(), 502);
        assert_eq!(ErrorKind::Inner.status(), 502);
        assert_eq!(ErrorKind::Timeout.status(), 504);
        let unknown = Error::from_box("boom".into());
        let response: Response<()> = unknown.to_response();
        assert_eq!(response.status(), 502);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
