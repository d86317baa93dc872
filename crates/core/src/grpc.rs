//! gRPC results: the status codes, the `grpc-status` and `grpc-retry-pushback-ms`
//! headers, and [`GrpcClassifier`], which classifies a gRPC response by its status.
//!
//! Nothing here depends on tonic: a gRPC response is an `http::Response` whose status is
//! in the `grpc-status` header (a Trailers-Only answer, which is how tonic and every
//! other gRPC server send an error with no message) or in the trailers after the body.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::outcome::{Classify, HttpClassifier, Outcome};

/// The `grpc-status` header (or trailer): the call's status code, in decimal.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The `grpc-message` header (or trailer): the status message, percent-encoded.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The `grpc-retry-pushback-ms` header (or trailer): how long the server asks the client
/// to wait before retrying, in milliseconds; negative or malformed means "do not retry"
/// (gRFC A6).
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// The longest `grpc-retry-pushback-ms` value read: 24 bytes (a `u64` has at most 20
/// digits). A longer value is malformed, so it means "do not retry", and it is never read
/// past this length.
pub const MAX_PUSHBACK_LEN: usize = 24;

/// A gRPC status code, as gRPC's `status.proto` numbers them.
///
/// In a config file a code is written by its name, upper or lower case
/// (`"UNAVAILABLE"`, `"resource_exhausted"`), or by its number.
///
/// ```
/// use tower_prism_core::GrpcCode;
///
/// assert_eq!(GrpcCode::from_i32(14), Some(GrpcCode::Unavailable));
/// assert_eq!("aborted".parse::<GrpcCode>(), Ok(GrpcCode::Aborted));
/// assert_eq!(GrpcCode::ResourceExhausted.as_str(), "RESOURCE_EXHAUSTED");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum GrpcCode {
    /// 0: not an error.
    Ok = 0,
    /// 1: the operation was cancelled, typically by the caller.
    Cancelled = 1,
    /// 2: an unknown error.
    Unknown = 2,
    /// 3: the client specified an invalid argument.
    InvalidArgument = 3,
    /// 4: the deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// 5: some requested entity was not found.
    NotFound = 5,
    /// 6: the entity a client tried to create already exists.
    AlreadyExists = 6,
    /// 7: the caller may not execute the operation.
    PermissionDenied = 7,
    /// 8: some resource (a quota, a rate limit) has been exhausted.
    ResourceExhausted = 8,
    /// 9: the system is not in a state the operation requires.
    FailedPrecondition = 9,
    /// 10: the operation was aborted (a concurrency conflict).
    Aborted = 10,
    /// 11: the operation was attempted past the valid range.
    OutOfRange = 11,
    /// 12: the operation is not implemented or supported.
    Unimplemented = 12,
    /// 13: an internal error.
    Internal = 13,
    /// 14: the service is currently unavailable; a retry may succeed.
    Unavailable = 14,
    /// 15: unrecoverable data loss or corruption.
    DataLoss = 15,
    /// 16: the request has no valid credentials.
    Unauthenticated = 16,
}

const ALL: [GrpcCode; 17] = [
    GrpcCode::Ok,
    GrpcCode::Cancelled,
    GrpcCode::Unknown,
    GrpcCode::InvalidArgument,
    GrpcCode::DeadlineExceeded,
    GrpcCode::NotFound,
    GrpcCode::AlreadyExists,
    GrpcCode::PermissionDenied,
    GrpcCode::ResourceExhausted,
    GrpcCode::FailedPrecondition,
    GrpcCode::Aborted,
    GrpcCode::OutOfRange,
    GrpcCode::Unimplemented,
    GrpcCode::Internal,
    GrpcCode::Unavailable,
    GrpcCode::DataLoss,
    GrpcCode::Unauthenticated,
];

impl GrpcCode {
    /// The code numbered `code`, or `None` for a number gRPC does not define.
    pub fn from_i32(code: i32) -> Option<GrpcCode> {
        usize::try_from(code).ok().and_then(|i| ALL.get(i).copied())
    }

    /// The code's number (what `grpc-status` carries, and `tonic::Code as i32`).
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code's name in gRPC's spelling, `UNAVAILABLE`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Cancelled => "CANCELLED",
            GrpcCode::Unknown => "UNKNOWN",
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Aborted => "ABORTED",
            GrpcCode::OutOfRange => "OUT_OF_RANGE",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::DataLoss => "DATA_LOSS",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The `grpc-status` header value for this code (no allocation).
    pub fn header_value(self) -> HeaderValue {
        const VALUES: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        HeaderValue::from_static(VALUES[self as usize])
    }

    /// A gRPC Trailers-Only response carrying this code, as a server fails a call before
    /// any message: HTTP 200, `content-type: application/grpc`, `grpc-status`, an empty
    /// (`Default`) body. Add a `grpc-message` (percent-encoded) or a
    /// `grpc-retry-pushback-ms` to its headers as the answer needs.
    ///
    /// ```
    /// use tower_prism_core::GrpcCode;
    ///
    /// let response: http::Response<String> = GrpcCode::Unavailable.trailers_only();
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["content-type"], "application/grpc");
    /// assert_eq!(response.headers()["grpc-status"], "14");
    /// ```
    pub fn trailers_only<B: Default>(self) -> http::Response<B> {
        let mut response = http::Response::new(B::default());
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(GRPC_STATUS, self.header_value());
        response
    }

    /// Whether the code says the server failed, whatever the request was: `UNKNOWN`,
    /// `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `UNIMPLEMENTED`, `INTERNAL`,
    /// `UNAVAILABLE` and `DATA_LOSS`. The other codes (`NOT_FOUND`, `INVALID_ARGUMENT`...)
    /// are answers about the request from a healthy server, as a 4xx is in HTTP.
    pub fn is_server_failure(self) -> bool {
        matches!(
            self,
            GrpcCode::Unknown
                | GrpcCode::DeadlineExceeded
                | GrpcCode::ResourceExhausted
                | GrpcCode::Unimplemented
                | GrpcCode::Internal
                | GrpcCode::Unavailable
                | GrpcCode::DataLoss
        )
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`GrpcCode`] from a name or number it is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a gRPC status code (a name such as UNAVAILABLE, or 0 to 16)")]
pub struct UnknownGrpcCode;

impl FromStr for GrpcCode {
    type Err = UnknownGrpcCode;

    fn from_str(text: &str) -> Result<GrpcCode, UnknownGrpcCode> {
        if let Ok(number) = text.parse::<i32>() {
            return GrpcCode::from_i32(number).ok_or(UnknownGrpcCode);
        }
        ALL.into_iter()
            .find(|code| code.as_str().eq_ignore_ascii_case(text))
            .ok_or(UnknownGrpcCode)
    }
}

impl Serialize for GrpcCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for GrpcCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GrpcCode, D::Error> {
        struct CodeVisitor;
        impl Visitor<'_> for CodeVisitor {
            type Value = GrpcCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a gRPC status code: a name such as \"UNAVAILABLE\", or 0 to 16")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GrpcCode, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GrpcCode, E> {
                i32::try_from(v)
                    .ok()
                    .and_then(GrpcCode::from_i32)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GrpcCode, E> {
                i32::try_from(v)
                    .ok()
                    .and_then(GrpcCode::from_i32)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
        }
        deserializer.deserialize_any(CodeVisitor)
    }
}

/// A set of [`GrpcCode`]s, as a bit set: `Copy`, and a lookup is one mask.
///
/// In a config file it is a list of codes: `["UNAVAILABLE", "ABORTED"]`.
///
/// ```
/// use tower_prism_core::{GrpcCode, GrpcCodes};
///
/// let codes: GrpcCodes = [GrpcCode::Aborted].into_iter().collect();
/// let codes = codes.with(GrpcCode::Unavailable);
/// assert!(codes.contains(GrpcCode::Aborted) && codes.contains(GrpcCode::Unavailable));
/// assert!(!codes.contains(GrpcCode::Internal));
/// assert!(GrpcCodes::RETRYABLE.contains(GrpcCode::ResourceExhausted));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GrpcCodes(u32);

impl GrpcCodes {
    /// No code.
    pub const EMPTY: GrpcCodes = GrpcCodes(0);
    /// The codes retried by default: `UNAVAILABLE` (the server did not process the call)
    /// and `RESOURCE_EXHAUSTED` (shed by a limit; pushback says when to come back).
    pub const RETRYABLE: GrpcCodes =
        GrpcCodes(1 << GrpcCode::Unavailable as u32 | 1 << GrpcCode::ResourceExhausted as u32);

    /// This set and `code`.
    #[must_use]
    pub const fn with(self, code: GrpcCode) -> GrpcCodes {
        GrpcCodes(self.0 | 1 << code as u32)
    }

    /// This set without `code`.
    #[must_use]
    pub const fn without(self, code: GrpcCode) -> GrpcCodes {
        GrpcCodes(self.0 & !(1 << code as u32))
    }

    /// Whether `code` is in the set.
    #[inline]
    pub const fn contains(self, code: GrpcCode) -> bool {
        self.0 & (1 << code as u32) != 0
    }

    /// The codes in the set, in numeric order.
    pub fn iter(self) -> impl Iterator<Item = GrpcCode> {
        ALL.into_iter().filter(move |code| self.contains(*code))
    }
}

impl fmt::Debug for GrpcCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<GrpcCode> for GrpcCodes {
    fn from_iter<I: IntoIterator<Item = GrpcCode>>(codes: I) -> GrpcCodes {
        codes.into_iter().fold(GrpcCodes::EMPTY, GrpcCodes::with)
    }
}

impl Serialize for GrpcCodes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for code in self.iter() {
            seq.serialize_element(&code)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for GrpcCodes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GrpcCodes, D::Error> {
        struct CodesVisitor;
        impl<'de> Visitor<'de> for CodesVisitor {
            type Value = GrpcCodes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of gRPC status codes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GrpcCodes, A::Error> {
                let mut codes = GrpcCodes::EMPTY;
                while let Some(code) = seq.next_element::<GrpcCode>()? {
                    codes = codes.with(code);
                }
                Ok(codes)
            }
        }
        deserializer.deserialize_seq(CodesVisitor)
    }
}

/// The status in a header map's `grpc-status` (a response's headers, or its trailers), or
/// `None` when there is none. A value that is not a code gRPC defines reads as `UNKNOWN`,
/// as gRPC's clients read it.
///
/// ```
/// use tower_prism_core::{grpc_status, GrpcCode};
///
/// let mut headers = http::HeaderMap::new();
/// assert_eq!(grpc_status(&headers), None);
/// headers.insert("grpc-status", "14".parse().unwrap());
/// assert_eq!(grpc_status(&headers), Some(GrpcCode::Unavailable));
/// headers.insert("grpc-status", "99".parse().unwrap());
/// assert_eq!(grpc_status(&headers), Some(GrpcCode::Unknown));
/// ```
pub fn grpc_status(headers: &HeaderMap) -> Option<GrpcCode> {
    let value = headers.get(GRPC_STATUS)?;
    // at most 10 digits fit an i32; anything longer is not a code
    let code = std::str::from_utf8(value.as_bytes())
        .ok()
        .filter(|text| text.len() <= 10)
        .and_then(|text| text.parse::<i32>().ok())
        .and_then(GrpcCode::from_i32);
    Some(code.unwrap_or(GrpcCode::Unknown))
}

/// What a `grpc-retry-pushback-ms` value asks of the client (gRFC A6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Retry no sooner than this (a number of milliseconds that does not fit a `u64`
    /// saturates).
    After(Duration),
    /// Do not retry: the value was negative or malformed.
    DoNotRetry,
}

impl Pushback {
    /// Reads a `grpc-retry-pushback-ms` value: a non-negative decimal number of
    /// milliseconds is [`After`](Pushback::After); anything else (negative, empty, not a
    /// number, longer than [`MAX_PUSHBACK_LEN`] bytes) is
    /// [`DoNotRetry`](Pushback::DoNotRetry). Never panics, never allocates.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::HeaderValue;
    /// use tower_prism_core::Pushback;
    ///
    /// let read = |v: &'static str| Pushback::parse(&HeaderValue::from_static(v));
    /// assert_eq!(read("250"), Pushback::After(Duration::from_millis(250)));
    /// assert_eq!(read("-1"), Pushback::DoNotRetry);
    /// assert_eq!(read("soon"), Pushback::DoNotRetry);
    /// ```
    pub fn parse(value: &HeaderValue) -> Pushback {
        let bytes = value.as_bytes();
        if bytes.is_empty()
            || bytes.len() > MAX_PUSHBACK_LEN
            || !bytes.iter().all(u8::is_ascii_digit)
        {
            return Pushback::DoNotRetry;
        }
        let millis = bytes.iter().fold(0u64, |total, digit| {
            total
                .saturating_mul(10)
                .saturating_add(u64::from(digit - b'0'))
        });
        Pushback::After(Duration::from_millis(millis))
    }

    /// The pushback in a header map (a response's headers, or its trailers), if there is
    /// a `grpc-retry-pushback-ms`.
    pub fn of(headers: &HeaderMap) -> Option<Pushback> {
        headers.get(GRPC_RETRY_PUSHBACK_MS).map(Pushback::parse)
    }
}

/// The classifier for gRPC calls (tonic clients and servers): a response is classified by
/// its `grpc-status` header.
///
/// | result | outcome |
/// |---|---|
/// | `Err` (connection refused, reset, timed out) | retryable failure |
/// | `grpc-status: 0` (OK) | success |
/// | a code in the retryable set (default `UNAVAILABLE`, `RESOURCE_EXHAUSTED`; add with [`retry_on`](Self::retry_on)) | retryable failure, unless `grpc-retry-pushback-ms` says "do not retry" |
/// | another server failure ([`GrpcCode::is_server_failure`]: `INTERNAL`, `UNKNOWN`, `DEADLINE_EXCEEDED`...) | failure, not retried |
/// | any other code (`NOT_FOUND`, `INVALID_ARGUMENT`, `CANCELLED`...) | success: a healthy server answered about the request |
/// | no `grpc-status`, HTTP status not 200 (a proxy's 503) | as [`HttpClassifier`]: 5xx, 429 and 408 are retryable failures |
/// | no `grpc-status`, HTTP 200 | success (see below) |
///
/// Its [`retry_after`](Classify::retry_after) reads `grpc-retry-pushback-ms` (or, with no
/// `grpc-status`, an HTTP `Retry-After`), so a breaker opened by a pushed-back failure
/// stays open that long.
///
/// **A status in trailers.** A gRPC server that sends a message and then fails puts the
/// status in the trailers, after the body. The stages classify a call when its response
/// head arrives and do not wait for the body, so such a call counts as a success (HTTP
/// 200 with no `grpc-status` header). Errors a server returns before any message (every
/// unary error from tonic, every rejection) are Trailers-Only answers, with the status in
/// the headers, and are classified by it.
///
/// ```
/// use tower_prism_core::{Classify, GrpcClassifier, GrpcCode, Outcome};
///
/// let answer = |status: &str| {
///     http::Response::builder().header("grpc-status", status).body(()).unwrap()
/// };
/// let classify = GrpcClassifier::new().retry_on(GrpcCode::Aborted);
/// let outcome = |status| Classify::<_, std::io::Error>::classify(&classify, Ok(&answer(status)));
/// assert_eq!(outcome("0"), Outcome::Success);
/// assert_eq!(outcome("14"), Outcome::RETRYABLE); // UNAVAILABLE
/// assert_eq!(outcome("10"), Outcome::RETRYABLE); // ABORTED, listed
/// assert_eq!(outcome("13"), Outcome::NOT_RETRYABLE); // INTERNAL
/// assert_eq!(outcome("5"), Outcome::Success); // NOT_FOUND
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcClassifier {
    retryable: GrpcCodes,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        GrpcClassifier::new()
    }
}

impl GrpcClassifier {
    /// Retries `UNAVAILABLE` and `RESOURCE_EXHAUSTED` ([`GrpcCodes::RETRYABLE`]).
    pub const fn new() -> Self {
        GrpcClassifier {
            retryable: GrpcCodes::RETRYABLE,
        }
    }

    /// Also treats `code` as a retryable failure (`ABORTED` for a call that is safe to
    /// run again, for example).
    #[must_use]
    pub const fn retry_on(self, code: GrpcCode) -> Self {
        GrpcClassifier {
            retryable: self.retryable.with(code),
        }
    }

    /// Retries exactly the codes in `codes` (replacing the defaults); other server
    /// failures stay failures that are not retried.
    #[must_use]
    pub const fn with_retryable(self, codes: GrpcCodes) -> Self {
        GrpcClassifier { retryable: codes }
    }

    /// The codes it retries.
    pub const fn retryable(&self) -> GrpcCodes {
        self.retryable
    }

    /// Classifies a gRPC status with the rules above; `pushback` is the response's
    /// `grpc-retry-pushback-ms`, if any.
    pub fn status(&self, code: GrpcCode, pushback: Option<Pushback>) -> Outcome {
        if code == GrpcCode::Ok {
            Outcome::Success
        } else if self.retryable.contains(code) {
            match pushback {
                Some(Pushback::DoNotRetry) => Outcome::NOT_RETRYABLE,
                _ => Outcome::RETRYABLE,
            }
        } else if code.is_server_failure() {
            Outcome::NOT_RETRYABLE
        } else {
            Outcome::Success
        }
    }
}

impl<B, E> Classify<http::Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: Result<&http::Response<B>, &E>) -> Outcome {
        let response = match result {
            Ok(response) => response,
            Err(_) => return Outcome::RETRYABLE,
        };
        match grpc_status(response.headers()) {
            Some(code) => self.status(code, Pushback::of(response.headers())),
            None if response.status() == StatusCode::OK => Outcome::Success,
            None => HttpClassifier::status(response.status()),
        }
    }

    fn retry_after(&self, result: Result<&http::Response<B>, &E>) -> Option<Duration> {
        let response = result.ok()?;
        if grpc_status(response.headers()).is_none() {
            return crate::internal::response_retry_after(response);
        }
        match Pushback::of(response.headers())? {
            Pushback::After(wait) => Some(wait),
            Pushback::DoNotRetry => None,
        }
    }
}

#[cfg(test)]
mod tests;
