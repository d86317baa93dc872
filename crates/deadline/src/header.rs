//! [`HeaderSpec`]: a deadline header's name and format, and the pure functions that read
//! and write the time left in it.

use std::io::Write as _;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tower_prism_core::ConfigError;

use crate::config::HeaderFormat;

/// The largest value gRPC allows in `grpc-timeout`: 8 digits.
const GRPC_MAX_VALUE: u128 = 99_999_999;

/// gRPC's units, finest first, with their length in nanoseconds.
const GRPC_UNITS: [(u8, u128); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60_000_000_000),
    (b'H', 3_600_000_000_000),
];

/// Headers whose meaning HTTP fixes (framing, routing, connection, content, credentials),
/// and gRPC's status:
/// a deadline header with one of these names would overwrite the request's own, so it is
/// refused.
const HTTP_OWN: [&str; 16] = [
    "authorization",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "cookie",
    "expect",
    "host",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "grpc-status",
];

/// A deadline header: its name, parsed, and the format of its value (never
/// [`HeaderFormat::Auto`]: resolved when the spec is made).
///
/// A [`DeadlineLayer`](crate::DeadlineLayer) makes one from its config's `header` and
/// `header_format` and hands it to its [`Carrier`](crate::Carrier); a carrier for a request
/// type of your own reads a value with [`parse`](Self::parse) and writes one with
/// [`encode`](Self::encode).
///
/// ```
/// use std::time::Duration;
/// use tower_prism_deadline::{HeaderFormat, HeaderSpec};
///
/// let spec = HeaderSpec::new("grpc-timeout", HeaderFormat::Auto).unwrap();
/// assert_eq!(spec.format(), HeaderFormat::Grpc);
/// assert_eq!(spec.parse(b"250m"), Some(Duration::from_millis(250)));
/// assert_eq!(spec.encode(Duration::from_millis(900)), "900000u");
/// assert_eq!(spec.parse(b"-1S"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSpec {
    name: HeaderName,
    format: HeaderFormat,
}

impl HeaderSpec {
    /// The spec for header `name` with values in `format` ([`HeaderFormat::Auto`] resolves
    /// to gRPC's syntax for `grpc-timeout`, else milliseconds), or an error naming the
    /// `header` field when `name` is not a valid header name.
    pub fn new(name: &str, format: HeaderFormat) -> Result<Self, ConfigError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new("header", name, "is not a valid HTTP header name"))?;
        if HTTP_OWN.contains(&name.as_str()) {
            return Err(ConfigError::new(
                "header",
                name.as_str(),
                "is a header HTTP itself uses: a deadline written into it would break the request",
            ));
        }
        let format = match format {
            HeaderFormat::Auto if name == "grpc-timeout" => HeaderFormat::Grpc,
            HeaderFormat::Auto => HeaderFormat::Milliseconds,
            other => other,
        };
        Ok(HeaderSpec { name, format })
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The format of its value (never [`HeaderFormat::Auto`]).
    pub fn format(&self) -> HeaderFormat {
        self.format
    }

    /// Reads the time left from a header value; `None` when the value is not in the
    /// spec's format (signs, exponents, empty values and out-of-range numbers included).
    pub fn parse(&self, value: &[u8]) -> Option<Duration> {
        let value = value.trim_ascii();
        match self.format {
            HeaderFormat::Grpc => parse_grpc(value),
            HeaderFormat::Seconds => parse_seconds(value),
            HeaderFormat::Milliseconds | HeaderFormat::Auto => {
                parse_digits(value).map(Duration::from_millis)
            }
        }
    }

    /// Writes `remaining` in the spec's format, rounded down.
    pub fn encode(&self, remaining: Duration) -> HeaderValue {
        // The longest value is u64::MAX seconds with three decimals: 24 bytes.
        let mut buf = [0u8; 32];
        let len = {
            let mut out = &mut buf[..];
            let room = out.len();
            let _ = match self.format {
                HeaderFormat::Grpc => {
                    let (value, unit) = grpc_value(remaining);
                    write!(out, "{value}{}", unit as char)
                }
                HeaderFormat::Seconds => match remaining.subsec_millis() {
                    0 => write!(out, "{}", remaining.as_secs()),
                    millis => {
                        // three decimals, trailing zeros trimmed: 250 ms -> "0.25"
                        let (mut decimals, mut width) = (millis, 3);
                        while decimals % 10 == 0 {
                            decimals /= 10;
                            width -= 1;
                        }
                        write!(out, "{}.{decimals:0width$}", remaining.as_secs())
                    }
                },
                HeaderFormat::Milliseconds | HeaderFormat::Auto => {
                    write!(out, "{}", remaining.as_millis())
                }
            };
            room - out.len()
        };
        // Digits, a dot and a unit letter are always a valid header value.
        HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("0"))
    }
}

/// `remaining` as gRPC's 8-digit value and unit: the finest unit it fits in, rounded
/// down; saturates at 99999999 hours.
fn grpc_value(remaining: Duration) -> (u128, u8) {
    let nanos = remaining.as_nanos();
    GRPC_UNITS
        .iter()
        .map(|&(unit, len)| (nanos / len, unit))
        .find(|&(value, _)| value <= GRPC_MAX_VALUE)
        .unwrap_or((GRPC_MAX_VALUE, b'H'))
}

/// A whole number of ASCII digits that fits in a `u64`.
fn parse_digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// gRPC's `grpc-timeout`: 1 to 8 digits and a unit.
fn parse_grpc(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.len() > 8 {
        return None;
    }
    let count = parse_digits(digits)?;
    let (_, len) = GRPC_UNITS.iter().find(|&&(u, _)| u == unit)?;
    let nanos = u128::from(count) * len;
    // 99999999 hours fits in a u64 of seconds.
    Some(Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    ))
}

/// Whole or decimal seconds (`"2"`, `"0.25"`); decimals past nanoseconds are dropped.
fn parse_seconds(value: &[u8]) -> Option<Duration> {
    let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], Some(&value[dot + 1..])),
        None => (value, None),
    };
    let secs = parse_digits(whole)?;
    let nanos = match fraction {
        None => 0,
        Some(f) if f.is_empty() || !f.iter().all(u8::is_ascii_digit) => return None,
        Some(f) => f
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(9)
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')),
    };
    Some(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, format: HeaderFormat) -> HeaderSpec {
        HeaderSpec::new(name, format).unwrap()
    }

    #[test]
    fn headers_http_itself_uses_are_refused() {
        for name in [
            "content-length",
            "Transfer-Encoding",
            "host",
            "te",
            "grpc-status",
        ] {
            let err = HeaderSpec::new(name, HeaderFormat::Auto).unwrap_err();
            assert_eq!(err.field(), "header", "{name}");
        }
        assert!(HeaderSpec::new("x-request-timeout-ms", HeaderFormat::Auto).is_ok());
        assert!(HeaderSpec::new("grpc-timeout", HeaderFormat::Auto).is_ok());
    }

    #[test]
    fn auto_resolves_by_name() {
        assert_eq!(
            spec("grpc-timeout", HeaderFormat::Auto).format(),
            HeaderFormat::Grpc
        );
        assert_eq!(
            spec("X-Request-Timeout-Ms", HeaderFormat::Auto).format(),
            HeaderFormat::Milliseconds
        );
        assert_eq!(
            spec("grpc-timeout", HeaderFormat::Seconds).format(),
            HeaderFormat::Seconds
        );
    }

    #[test]
    fn grpc_reads_every_unit() {
        let g = spec("grpc-timeout", HeaderFormat::Grpc);
        assert_eq!(g.parse(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(g.parse(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(g.parse(b"4S"), Some(Duration::from_secs(4)));
        assert_eq!(g.parse(b"5m"), Some(Duration::from_millis(5)));
        assert_eq!(g.parse(b"6u"), Some(Duration::from_micros(6)));
        assert_eq!(g.parse(b"7n"), Some(Duration::from_nanos(7)));
        assert_eq!(
            g.parse(b"99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for bad in [
            &b""[..],
            b"m",
            b"10",
            b"10s",
            b"10x",
            b"-1S",
            b"+1S",
            b"1.5S",
            b"123456789m",
            b"1 S",
        ] {
            assert_eq!(g.parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn grpc_writes_the_finest_unit_that_fits_rounded_down() {
        let g = spec("grpc-timeout", HeaderFormat::Grpc);
        assert_eq!(g.encode(Duration::from_nanos(99_999_999)), "99999999n");
        assert_eq!(g.encode(Duration::from_nanos(100_000_001)), "100000u");
        assert_eq!(g.encode(Duration::from_millis(900)), "900000u");
        assert_eq!(g.encode(Duration::from_secs(1000)), "1000000m");
        assert_eq!(g.encode(Duration::from_secs(200_000)), "200000S");
        assert_eq!(g.encode(Duration::ZERO), "0n");
        assert_eq!(g.encode(Duration::MAX), "99999999H");
        // what is written reads back as at most the time left
        for nanos in [1u64, 999, 123_456_789, 5_000_000_007, 86_400_000_000_123] {
            let d = Duration::from_nanos(nanos);
            let back = g.parse(g.encode(d).as_bytes()).unwrap();
            assert!(back <= d && d - back < d / 1000 + Duration::from_nanos(1));
        }
    }

    #[test]
    fn milliseconds_read_and_write() {
        let m = spec("x-request-timeout-ms", HeaderFormat::Milliseconds);
        assert_eq!(m.parse(b"250"), Some(Duration::from_millis(250)));
        assert_eq!(m.parse(b" 250 "), Some(Duration::from_millis(250)));
        for bad in [&b""[..], b"-5", b"1.5", b"abc", b"99999999999999999999999"] {
            assert_eq!(m.parse(bad), None);
        }
        assert_eq!(m.encode(Duration::from_micros(899_999)), "899");
    }

    #[test]
    fn seconds_read_decimals_and_write_three() {
        let s = spec("x-timeout", HeaderFormat::Seconds);
        assert_eq!(s.parse(b"2"), Some(Duration::from_secs(2)));
        assert_eq!(s.parse(b"0.25"), Some(Duration::from_millis(250)));
        assert_eq!(s.parse(b"1.0000000019"), Some(Duration::new(1, 1)));
        for bad in [&b""[..], b".5", b"1.", b"1e3", b"-1", b"inf", b"1.2.3"] {
            assert_eq!(s.parse(bad), None);
        }
        assert_eq!(s.encode(Duration::from_millis(2000)), "2");
        assert_eq!(s.encode(Duration::from_micros(250_999)), "0.25");
        assert_eq!(s.encode(Duration::from_millis(1_005)), "1.005");
    }
}
