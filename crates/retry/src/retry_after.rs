//! `Retry-After`: reading the header of a response that asks the caller to wait.

use std::time::{Duration, SystemTime};

use http::{HeaderValue, Response};

use crate::hint::ResponseHint;

/// The longest `Retry-After` value parsed: 64 bytes. An HTTP-date is at most 33 and a
/// delta-seconds value needs at most 20 digits, so a longer value is not a valid one; it
/// is ignored like any other invalid value (the retry waits its backoff), and never read
/// past this length.
pub const MAX_RETRY_AFTER_LEN: usize = tower_prism_core::internal::MAX_RETRY_AFTER_LEN;

/// Reads `Retry-After` from 429 and 503 responses (both forms, see [`parse_retry_after`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryAfterHeader;

impl<B> ResponseHint<Response<B>> for RetryAfterHeader {
    fn retry_after(&self, response: &Response<B>) -> Option<Duration> {
        tower_prism_core::internal::response_retry_after(response)
    }
}

/// Parses a `Retry-After` value: delta-seconds (`"120"`) or an HTTP-date relative to `now`,
/// in any of the three forms RFC 9110 requires a recipient to accept (IMF-fixdate
/// `"Sun, 06 Nov 1994 08:49:37 GMT"`, and the obsolete RFC 850 `"Sunday, 06-Nov-94
/// 08:49:37 GMT"` and asctime `"Sun Nov  6 08:49:37 1994"`), read by the
/// [`httpdate`](https://docs.rs/httpdate) crate. A date in the past is `Some(ZERO)`;
/// anything else, including a value over [`MAX_RETRY_AFTER_LEN`] bytes, is `None`
/// (ignored, never a panic). A number too large for a `u64` saturates (the retry stage's
/// `max_retry_after` then gives up at once).
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use http::HeaderValue;
/// use tower_prism_retry::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// let v = |s: &'static str| parse_retry_after(&HeaderValue::from_static(s), now);
/// assert_eq!(v("120"), Some(Duration::from_secs(120)));
/// assert_eq!(v("Sun, 06 Nov 1994 08:50:07 GMT"), Some(Duration::from_secs(30)));
/// assert_eq!(v("Sunday, 06-Nov-94 08:50:07 GMT"), Some(Duration::from_secs(30)));
/// assert_eq!(v("Sun Nov  6 08:50:07 1994"), Some(Duration::from_secs(30)));
/// assert_eq!(v("soon"), None);
/// ```
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    // one parser for the whole stack: core's, which `HttpClassifier` uses too
    tower_prism_core::internal::parse_retry_after(value, now)
}

#[cfg(test)]
mod tests;
