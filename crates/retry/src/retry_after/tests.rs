use super::*;
use http::header::RETRY_AFTER;
use std::time::UNIX_EPOCH;

use proptest::prelude::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Seconds from the epoch to the date `text`, read as a `Retry-After` at the epoch.
fn date(text: &str) -> Option<u64> {
    parse_retry_after(&HeaderValue::from_str(text).ok()?, UNIX_EPOCH).map(|d| d.as_secs())
}

#[test]
fn dates_known_to_be_right() {
    assert_eq!(date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    assert_eq!(date("Tue, 29 Feb 2000 12:00:00 GMT"), Some(951_825_600));
    assert_eq!(date("Fri, 31 Dec 2100 23:59:59 GMT"), Some(4_133_980_799));
}

#[test]
fn the_obsolete_forms_are_accepted() {
    for form in [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ] {
        assert_eq!(date(form), Some(784_111_777), "{form}");
    }
    assert_eq!(date("Thursday, 01-Jan-70 00:00:00 GMT"), Some(0));
    assert_eq!(
        date("Tuesday, 29-Feb-00 12:00:00 GMT"),
        Some(951_825_600),
        "a two-digit year below 70 is in the 2000s"
    );
    assert_eq!(date("Tue Feb 29 12:00:00 2000"), Some(951_825_600));
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn never_panics_on_any_text(text in "\\PC{0,40}") {
        if let Ok(v) = HeaderValue::from_str(&text) {
            let _ = parse_retry_after(&v, SystemTime::now());
        }
    }

    /// Any bytes a header can hold, of any length around the bound.
    #[test]
    fn never_panics_on_any_bytes(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
        now in proptest::num::u64::ANY,
    ) {
        let now = UNIX_EPOCH.checked_add(Duration::from_secs(now)).unwrap_or(UNIX_EPOCH);
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            let parsed = parse_retry_after(&v, now);
            prop_assert!(parsed.is_none() || bytes.len() <= MAX_RETRY_AFTER_LEN);
        }
    }

    /// Strings shaped like dates (right lengths, separators in place) with arbitrary
    /// characters in the fields: rejected or accepted, never a panic.
    #[test]
    fn never_panics_on_date_shaped_text(fill in "[0-9A-Za-z :,\\-]{20,36}") {
        let _ = date(&fill);
    }

    #[test]
    fn formatted_dates_parse_back(secs in 0u64..8_000_000_000) {
        let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
        prop_assert_eq!(date(&text), Some(secs), "{}", text);
    }
}
