//! HTTP: which requests may be retried, `Retry-After` parsing, and the policy pieces that
//! [`RetryBuilder::http`](crate::RetryBuilder::http) puts together.
//!
//! Requests reach the retry layer with a [`ReplayBody`] (wrap them with [`replayable`],
//! e.g. in a `tower::util::MapRequestLayer` in front of it). Idempotent ones are retried
//! on errors and on 408/429/5xx (except 501/505) responses, waiting at least as long as a
//! `Retry-After` header says, up to the config's `max_retry_after` (30 s by default; a
//! longer one returns that response at once); a response still failing after the last
//! attempt is returned as it is. Header values are read only up to a bounded length
//! ([`MAX_RETRY_AFTER_LEN`], [`MAX_IDEMPOTENCY_KEY_LEN`]).
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{service_fn, BoxError, Service, ServiceExt};
//! use tower_layer::Layer;
//! use tower_prism_retry::{http::replayable, Backoff, ReplayBody, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = RetryLayer::builder()
//!     .http()
//!     .backoff(Backoff::fixed(Duration::from_millis(1)))
//!     .build()
//!     .unwrap();
//! let flaky = service_fn(|req: http::Request<ReplayBody<Full<Bytes>>>| async move {
//!     let status = if req.headers().contains_key("x-second-try") { 200 } else { 503 };
//!     Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap())
//! });
//! let mut svc = layer.layer(flaky);
//! let req = http::Request::get("/").body(Full::new(Bytes::new())).unwrap();
//! let response = svc.ready().await.unwrap().call(replayable(req, 64 * 1024)).await.unwrap();
//! assert_eq!(response.status(), 503, "GET retried, then the last 503 returned as is");
//! # }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;

use crate::body::ReplayBody;
use crate::policy::{ReplayRequest, ResponseHint};

/// The header that marks a request safe to retry whatever its method.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The longest `Idempotency-Key` value that marks a request retry-safe: 255 bytes, the
/// limit Stripe documents for its keys (a UUID is 36). A longer (or empty) key is not a
/// key a server can have stored, so it is treated as absent: the request is retried only
/// if its method or the [`Idempotent`] extension allows it.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The longest `Retry-After` value parsed: 64 bytes. An HTTP-date is at most 33 and a
/// delta-seconds value needs at most 20 digits, so a longer value is not a valid one; it
/// is ignored like any other invalid value (the retry waits its backoff), and never read
/// past this length.
pub const MAX_RETRY_AFTER_LEN: usize = 64;

/// A request extension that marks a request safe to retry whatever its method.
///
/// ```
/// use tower_prism_retry::http::{is_retry_safe, Idempotent};
///
/// let mut req = http::Request::post("/charge").body(()).unwrap();
/// assert!(!is_retry_safe(&req));
/// req.extensions_mut().insert(Idempotent);
/// assert!(is_retry_safe(&req));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Idempotent;

/// GET, HEAD, OPTIONS, PUT, DELETE and TRACE: the methods RFC 9110 calls idempotent.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether a request may be retried: an idempotent method, the [`Idempotent`] extension,
/// or an `Idempotency-Key` header of 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] bytes.
pub fn is_retry_safe<B>(request: &Request<B>) -> bool {
    is_idempotent(request.method())
        || request.extensions().get::<Idempotent>().is_some()
        || request
            .headers()
            .get(IDEMPOTENCY_KEY)
            .is_some_and(|key| (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len()))
}

/// Wraps a request's body in a [`ReplayBody`] that remembers up to `limit` bytes. Use it
/// with `tower::util::MapRequestLayer` in front of the retry layer.
pub fn replayable<B: Body>(request: Request<B>, limit: usize) -> Request<ReplayBody<B>> {
    request.map(|body| ReplayBody::new(body, limit))
}

/// Replays retry-safe ([`is_retry_safe`]) requests whose [`ReplayBody`] is still
/// replayable; every other request is sent once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayIdempotent;

impl<B> ReplayRequest<Request<ReplayBody<B>>> for ReplayIdempotent {
    fn replay(&self, request: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        if !is_retry_safe(request) {
            return None;
        }
        let body = request.body().try_clone()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

/// Reads `Retry-After` from 429 and 503 responses (both forms, see [`parse_retry_after`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryAfterHeader;

impl<B> ResponseHint<Response<B>> for RetryAfterHeader {
    fn retry_after(&self, response: &Response<B>) -> Option<Duration> {
        if !matches!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            return None;
        }
        let value = response.headers().get(RETRY_AFTER)?;
        parse_retry_after(value, SystemTime::now())
    }
}

/// Parses a `Retry-After` value: delta-seconds (`"120"`) or an HTTP-date relative to `now`,
/// in any of the three forms RFC 9110 requires a recipient to accept (IMF-fixdate
/// `"Sun, 06 Nov 1994 08:49:37 GMT"`, and the obsolete RFC 850 `"Sunday, 06-Nov-94
/// 08:49:37 GMT"` and asctime `"Sun Nov  6 08:49:37 1994"`; see [`parse_http_date`]). A
/// date in the past is `Some(ZERO)`; anything else, including a value over
/// [`MAX_RETRY_AFTER_LEN`] bytes, is `None` (ignored, never a panic). A number too large
/// for a `u64` saturates (the retry stage's `max_retry_after` then gives up at once).
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use http::HeaderValue;
/// use tower_prism_retry::http::parse_retry_after;
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
    if value.len() > MAX_RETRY_AFTER_LEN {
        return None;
    }
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // very long numbers saturate rather than fail
        return Some(Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(text)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the Unix epoch of an HTTP-date in any of its three forms: IMF-fixdate,
/// or the obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`; a two-digit year `yy` is
/// `19yy` from 70 on and `20yy` below) and asctime (`Sun Nov  6 08:49:37 1994`) forms.
pub fn parse_http_date(text: &str) -> Option<u64> {
    parse_imf_fixdate(text)
        .or_else(|| parse_rfc850(text))
        .or_else(|| parse_asctime(text))
}

const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Digits only (no sign, no space), at most 4 of them.
fn small_number(text: &str) -> Option<u64> {
    (!text.is_empty() && text.len() <= 4 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `HH:MM:SS` as (hours, minutes, seconds), two digits each.
fn time_of_day(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.split(':');
    let mut two = || parts.next().filter(|p| p.len() == 2).and_then(small_number);
    let hms = (two()?, two()?, two()?);
    parts.next().is_none().then_some(hms)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`.
fn parse_rfc850(text: &str) -> Option<u64> {
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let (day_name, rest) = text.split_once(", ")?;
    let mut fields = rest.split(' ');
    let (date, time, zone) = (fields.next()?, fields.next()?, fields.next()?);
    if !DAYS.contains(&day_name) || zone != "GMT" || fields.next().is_some() {
        return None;
    }
    let mut date = date.split('-');
    let (day, month, year) = (date.next()?, date.next()?, date.next()?);
    if date.next().is_some() || day.len() != 2 || year.len() != 2 {
        return None;
    }
    let year = small_number(year)?;
    let year = if year >= 70 { 1900 + year } else { 2000 + year };
    let month = MONTH_NAMES.iter().position(|m| *m == month)? as u64 + 1;
    let (hour, minute, second) = time_of_day(time)?;
    epoch_seconds(year, month, small_number(day)?, hour, minute, second)
}

/// `Sun Nov  6 08:49:37 1994` (the day of the month space-padded to two characters).
fn parse_asctime(text: &str) -> Option<u64> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let b = text.as_bytes();
    if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
        return None;
    }
    let (day_name, month) = (text.get(0..3)?, text.get(4..7)?);
    if !DAYS.contains(&day_name) {
        return None;
    }
    let month = MONTH_NAMES.iter().position(|m| *m == month)? as u64 + 1;
    let day = small_number(text.get(8..10)?.trim_start())?;
    let (hour, minute, second) = time_of_day(text.get(11..19)?)?;
    let year = text
        .get(20..24)
        .filter(|y| y.len() == 4)
        .and_then(small_number)?;
    epoch_seconds(year, month, day, hour, minute, second)
}

/// Seconds since the Unix epoch of a UTC date and time, `None` when it is not a real one
/// (or before 1970).
fn epoch_seconds(
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
) -> Option<u64> {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let month_len = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if year < 1970 || day == 0 || day > month_len || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_since_epoch(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Seconds since the Unix epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_imf_fixdate(text: &str) -> Option<u64> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    let b = text.as_bytes();
    if b.len() != 29
        || &b[3..5] != b", "
        || b[7] != b' '
        || b[11] != b' '
        || b[16] != b' '
        || b[19] != b':'
        || b[22] != b':'
        || &b[25..] != b" GMT"
        || !DAYS.contains(&&b[0..3])
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = &b[range];
        digits.iter().all(u8::is_ascii_digit).then(|| {
            digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
        })
    };
    let day = num(5..7)?;
    let month = MONTH_NAMES.iter().position(|m| m.as_bytes() == &b[8..11])? as u64 + 1;
    let year = num(12..16)?;
    let (hour, minute, second) = (num(17..19)?, num(20..22)?, num(23..25)?);
    epoch_seconds(year, month, day, hour, minute, second)
}

/// Days from 1970-01-01 to a date in the proleptic Gregorian calendar (year >= 1970).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    // Count from 1 March of year 0, so that the leap day ends a year.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn dates_known_to_be_right() {
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_imf_fixdate("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(
            parse_imf_fixdate("Fri, 31 Dec 2100 23:59:59 GMT"),
            Some(4_133_980_799)
        );
    }

    #[test]
    fn the_obsolete_forms_are_accepted() {
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(form), Some(784_111_777), "{form}");
        }
        assert_eq!(parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tuesday, 29-Feb-00 12:00:00 GMT"),
            Some(951_825_600),
            "a two-digit year below 70 is in the 2000s"
        );
        assert_eq!(
            parse_http_date("Tue Feb 29 12:00:00 2000"),
            Some(951_825_600)
        );
    }

    #[test]
    fn bad_values_are_ignored() {
        let now = at(1_000_000_000);
        for bad in [
            "",
            " ",
            "-5",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 UTC",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sunday, 31-Nov-94 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sunday, 06-Nov-94 8:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT extra",
            "Sun Nov 06 08:49:37 94",
            "Sun Nov  0 08:49:37 1994",
            "Sun Foo  6 08:49:37 1994",
            "Sun Nov  6 08-49-37 1994",
            "Sun, 31 Feb 2001 08:49:37 GMT",
            "Sun, 29 Feb 2001 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 0a Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMTX",
        ] {
            let v = HeaderValue::from_str(bad).unwrap();
            assert_eq!(parse_retry_after(&v, now), None, "{bad:?}");
        }
        let opaque = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        assert_eq!(parse_retry_after(&opaque, now), None);
    }

    #[test]
    fn seconds_and_dates() {
        let now = at(784_111_777);
        let v = |s: &str| parse_retry_after(&HeaderValue::from_str(s).unwrap(), now);
        assert_eq!(v("0"), Some(Duration::ZERO));
        assert_eq!(v(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            v("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(v("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(
            v("Sat, 05 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "past"
        );
        assert_eq!(
            v("Mon, 07 Nov 1994 08:49:37 GMT"),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn only_429_and_503_carry_hints() {
        let response = |status: u16| {
            Response::builder()
                .status(status)
                .header(RETRY_AFTER, "3")
                .body(())
                .unwrap()
        };
        assert_eq!(
            RetryAfterHeader.retry_after(&response(429)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            RetryAfterHeader.retry_after(&response(503)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(RetryAfterHeader.retry_after(&response(500)), None);
        let no_header = Response::builder().status(503).body(()).unwrap();
        assert_eq!(RetryAfterHeader.retry_after(&no_header), None);
    }

    #[test]
    fn retry_safety() {
        for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
            assert!(
                is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
        for m in ["POST", "PATCH", "CONNECT"] {
            assert!(
                !is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
        let keyed = Request::post("/")
            .header("Idempotency-Key", "abc")
            .body(())
            .unwrap();
        assert!(is_retry_safe(&keyed));
    }

    #[test]
    fn replay_idempotent_copies_everything_but_only_when_safe() {
        let mut req = replayable(
            Request::put("http://x/a?b=1")
                .header("x-trace", "7")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    b"data",
                )))
                .unwrap(),
            64,
        );
        req.extensions_mut().insert(42u32);
        let copy = ReplayIdempotent.replay(&req).unwrap();
        assert_eq!(copy.method(), Method::PUT);
        assert_eq!(copy.uri(), "http://x/a?b=1");
        assert_eq!(copy.headers()["x-trace"], "7");
        assert_eq!(copy.extensions().get::<u32>(), Some(&42));
        let post = replayable(
            Request::post("/")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
            64,
        );
        assert!(ReplayIdempotent.replay(&post).is_none());
    }

    #[test]
    fn a_megabyte_retry_after_is_ignored_as_invalid() {
        let now = at(1_000_000_000);
        for long in ["9".repeat(1 << 20), " ".repeat(1 << 20) + "5"] {
            let v = HeaderValue::from_str(&long).unwrap();
            assert_eq!(parse_retry_after(&v, now), None);
        }
        let response = Response::builder()
            .status(503)
            .header(RETRY_AFTER, "1".repeat(1 << 20))
            .body(())
            .unwrap();
        assert_eq!(RetryAfterHeader.retry_after(&response), None);
        // the longest valid forms are well within the bound
        let padded = format!("{:>width$}", "7", width = MAX_RETRY_AFTER_LEN);
        let v = HeaderValue::from_str(&padded).unwrap();
        assert_eq!(parse_retry_after(&v, now), Some(Duration::from_secs(7)));
        let over = format!("{:>width$}", "7", width = MAX_RETRY_AFTER_LEN + 1);
        let v = HeaderValue::from_str(&over).unwrap();
        assert_eq!(parse_retry_after(&v, now), None);
    }

    #[test]
    fn only_a_bounded_non_empty_idempotency_key_makes_a_post_retry_safe() {
        let post = |key: &str| {
            Request::post("/")
                .header(IDEMPOTENCY_KEY, key)
                .body(())
                .unwrap()
        };
        assert!(is_retry_safe(&post("k")));
        assert!(is_retry_safe(&post(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN))));
        assert!(!is_retry_safe(&post(
            &"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)
        )));
        assert!(
            !is_retry_safe(&post(&"k".repeat(1 << 20))),
            "a megabyte key"
        );
        assert!(!is_retry_safe(&post("")), "an empty key");
        // an idempotent method needs no key, however long the header
        let mut get = post(&"k".repeat(1 << 20));
        *get.method_mut() = Method::GET;
        assert!(is_retry_safe(&get));
        let body = replayable(
            Request::post("/")
                .header(IDEMPOTENCY_KEY, "k".repeat(1 << 20))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
            64,
        );
        assert!(ReplayIdempotent.replay(&body).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics_on_any_text(text in "\\PC{0,40}") {
            if let Ok(v) = HeaderValue::from_str(&text) {
                let _ = parse_retry_after(&v, SystemTime::now());
            }
        }

        /// Any bytes a header can hold, of any length around the bound, and any text
        /// (multi-byte characters included) given straight to the date parsers.
        #[test]
        fn never_panics_on_any_bytes(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
            text in "\\PC{0,40}",
            now in proptest::num::u64::ANY,
        ) {
            let now = UNIX_EPOCH.checked_add(Duration::from_secs(now)).unwrap_or(UNIX_EPOCH);
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let parsed = parse_retry_after(&v, now);
                prop_assert!(parsed.is_none() || bytes.len() <= MAX_RETRY_AFTER_LEN);
            }
            let _ = parse_http_date(&text);
            let _ = parse_http_date(&String::from_utf8_lossy(&bytes));
        }

        /// Strings shaped like dates (right lengths, separators in place) with arbitrary
        /// characters in the fields: the parsers must reject or accept, never panic.
        #[test]
        fn never_panics_on_date_shaped_text(
            fill in "[0-9A-Za-z :,\\-\u{e9}\u{1F600}]{20,36}",
        ) {
            let _ = parse_http_date(&fill);
            let _ = parse_imf_fixdate(&fill);
        }

        #[test]
        fn formatted_dates_parse_back(secs in 0u64..8_000_000_000) {
            let days = secs / 86_400;
            // 1970-01-01 was a Thursday
            let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
            let (y, m, d) = civil(days);
            let months = ["Jan","Feb","Mar","Apr","May","Jun","Jul","Aug","Sep","Oct","Nov","Dec"];
            let text = format!("{weekday}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
                months[(m - 1) as usize], secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
            prop_assert_eq!(parse_imf_fixdate(&text), Some(secs), "{}", text);
        }
    }

    /// Days since the epoch to (year, month, day), by walking years and months: slow and
    /// obviously right, to check the closed form against.
    fn civil(mut days: u64) -> (u64, u64, u64) {
        let mut year: u64 = 1970;
        loop {
            let leap =
                (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
            let len = if leap { 366 } else { 365 };
            if days < len {
                break;
            }
            days -= len;
            year += 1;
        }
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let lens = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut month = 1;
        for len in lens {
            if days < len {
                break;
            }
            days -= len;
            month += 1;
        }
        (year, month, days + 1)
    }
}
