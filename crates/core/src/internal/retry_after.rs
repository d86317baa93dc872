//! `Retry-After`: the one parser of the header, shared by the retry stage
//! (`tower_prism_retry::parse_retry_after`) and [`HttpClassifier`](crate::HttpClassifier)
//! (which the breaker asks for the open wait).

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};

/// The longest `Retry-After` value parsed: 64 bytes. An HTTP-date is at most 33 and a
/// delta-seconds value needs at most 20 digits, so a longer value is not a valid one.
pub const MAX_RETRY_AFTER_LEN: usize = 64;

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date (any of RFC 9110's three
/// forms) relative to `now`. A date in the past is `Some(ZERO)`; anything else, including
/// a value over [`MAX_RETRY_AFTER_LEN`] bytes, is `None`. A number too large for a `u64`
/// saturates.
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    if value.len() > MAX_RETRY_AFTER_LEN {
        return None;
    }
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // very long numbers saturate rather than fail
        return Some(Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of a 429 or 503 response, read at `SystemTime::now()`; `None` for any
/// other status, or no (or an invalid) header.
pub fn response_retry_after<B>(response: &Response<B>) -> Option<Duration> {
    if !matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    let value = response.headers().get(RETRY_AFTER)?;
    parse_retry_after(value, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(code: u16, retry_after: Option<&str>) -> Response<()> {
        let mut b = Response::builder().status(code);
        if let Some(v) = retry_after {
            b = b.header(RETRY_AFTER, v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_429_and_503_carry_a_hint() {
        assert_eq!(
            response_retry_after(&response(503, Some("2"))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            response_retry_after(&response(429, Some(" 7 "))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(response_retry_after(&response(500, Some("2"))), None);
        assert_eq!(response_retry_after(&response(200, Some("2"))), None);
        assert_eq!(response_retry_after(&response(503, None)), None);
        assert_eq!(response_retry_after(&response(503, Some("soon"))), None);
    }

    #[test]
    fn dates_and_huge_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let v = |s: &'static str| parse_retry_after(&HeaderValue::from_static(s), now);
        assert_eq!(
            v("Sun, 06 Nov 1994 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(v("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(
            v("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        let long = "1".repeat(MAX_RETRY_AFTER_LEN + 1);
        assert_eq!(
            parse_retry_after(&HeaderValue::from_str(&long).unwrap(), now),
            None
        );
    }
}
