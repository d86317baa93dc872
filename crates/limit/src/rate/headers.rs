//! Rate-limit response headers: the IETF `RateLimit-Policy` / `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers) and the common `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining` and `X-RateLimit-Reset`.
//!
//! [`HttpHeaders`] writes them on admitted responses when the config's `headers` is set,
//! and makes every rejection a [`RateLimitRejection`] that carries what a 429 answer
//! needs. [`NoHeaders`] (the default) does neither and compiles away.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tower_prism_core::BoxError;

use super::limiter::RateLimiter;
use crate::bucket::TokensLeft;
use crate::error::Error;

/// What a rate-limit service does with rate-limit headers: writes them on admitted
/// responses (or not), and how it boxes a rejection. Implemented by [`NoHeaders`] and
/// [`HttpHeaders`]; a marker, never instantiated.
pub trait RateHeaders<Res> {
    /// What an admitted call remembers until its response is written (`()` when nothing
    /// is written).
    type Stamp;

    /// The stamp of a call just admitted, with what it `left` in its bucket.
    fn stamp(limiter: &RateLimiter, left: TokensLeft) -> Self::Stamp;

    /// Writes the stamp on the response.
    fn write(stamp: &Self::Stamp, response: &mut Res);

    /// Boxes a rejection.
    fn reject(error: Error, limiter: &RateLimiter) -> BoxError;
}

/// Writes nothing; rejections are plain [`Error`]s. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHeaders;

impl<Res> RateHeaders<Res> for NoHeaders {
    type Stamp = ();

    #[inline]
    fn stamp(_: &RateLimiter, _: TokensLeft) {}

    #[inline]
    fn write(_: &(), _: &mut Res) {}

    fn reject(error: Error, _: &RateLimiter) -> BoxError {
        Box::new(error)
    }
}

/// For `http::Response<B>`: rate-limit headers on admitted responses when the config's
/// `headers` is set (one relaxed load and a branch per call when it is not), and every
/// rejection a [`RateLimitRejection`] (whose [`source`](std::error::Error::source) is the
/// [`Error`]), so an HTTP error layer can write the same headers on its 429.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpHeaders;

impl<Body> RateHeaders<http::Response<Body>> for HttpHeaders {
    type Stamp = Option<HeaderStamp>;

    #[inline]
    fn stamp(limiter: &RateLimiter, left: TokensLeft) -> Option<HeaderStamp> {
        if !limiter.headers_enabled() {
            return None;
        }
        Some(HeaderStamp {
            limiter: limiter.clone(),
            remaining: left.get(),
        })
    }

    #[inline]
    fn write(stamp: &Option<HeaderStamp>, response: &mut http::Response<Body>) {
        if let Some(stamp) = stamp {
            stamp
                .limiter
                .info(stamp.remaining)
                .write_headers(response.headers_mut());
        }
    }

    fn reject(error: Error, limiter: &RateLimiter) -> BoxError {
        // Nothing left; the reset is when a retry may pass, or (for a queue that
        // refused) when the bucket will be full again.
        let mut info = limiter.info(0);
        if let Some(wait) = error.retry_after() {
            info.reset = wait;
        }
        Box::new(RateLimitRejection { error, info })
    }
}

/// What an admitted call of an [`HttpHeaders`] service remembers until its response is
/// written: the tokens its bucket had left. Two words, so that a response future with
/// headers off grows by no more than that.
#[derive(Debug, Clone)]
pub struct HeaderStamp {
    limiter: RateLimiter,
    remaining: u64,
}

/// A limiter's state as rate-limit headers tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitInfo {
    /// The policy's name, quoted as a structured-field string (`"payments"`).
    pub policy: Arc<str>,
    /// Tokens a full bucket holds (the burst).
    pub limit: u32,
    /// Whole tokens left in the request's bucket.
    pub remaining: u64,
    /// How long until the bucket is full again (for a rejection: until it may retry).
    pub reset: Duration,
    /// How long an empty bucket takes to fill: the window `limit` is counted over.
    pub window: Duration,
}

/// `x-ratelimit-limit`.
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `x-ratelimit-remaining`.
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `x-ratelimit-reset` (delta seconds).
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
/// `x-ratelimit-after`: on a rejection, the seconds until a retry may pass (as
/// `Retry-After`; the name tower_governor answers with).
pub static X_RATELIMIT_AFTER: HeaderName = HeaderName::from_static("x-ratelimit-after");
/// `ratelimit-policy` (IETF draft).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `ratelimit` (IETF draft).
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

impl RateLimitInfo {
    /// Writes the five headers (replacing any already there):
    ///
    /// ```text
    /// RateLimit-Policy: "payments";q=100;w=60
    /// RateLimit: "payments";r=42;t=35
    /// X-RateLimit-Limit: 100
    /// X-RateLimit-Remaining: 42
    /// X-RateLimit-Reset: 35
    /// ```
    ///
    /// `q` is the burst, `w` the seconds an empty bucket takes to fill, `r` the tokens
    /// left, `t` (and `X-RateLimit-Reset`) the seconds until the bucket is full again, or
    /// on a rejection until a retry may pass; seconds are rounded up.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let reset = whole_seconds(self.reset);
        let window = whole_seconds(self.window).max(1);
        // room for the five at once, rather than growing the map insert by insert
        headers.reserve(5);
        // The two structured fields name the policy, so they are formatted: on the stack,
        // then copied once into the header value.
        let policy = field(format_args!(
            "{};q={};w={}",
            self.policy, self.limit, window
        ));
        let state = field(format_args!(
            "{};r={};t={}",
            self.policy, self.remaining, reset
        ));
        // The name is quoted and escaped at build time, so these always parse; a value
        // that somehow does not is left out rather than panicking.
        if let Some(value) = policy {
            headers.insert(RATELIMIT_POLICY.clone(), value);
        }
        if let Some(value) = state {
            headers.insert(RATELIMIT.clone(), value);
        }
        headers.insert(X_RATELIMIT_LIMIT.clone(), number(u64::from(self.limit)));
        headers.insert(X_RATELIMIT_REMAINING.clone(), number(self.remaining));
        headers.insert(X_RATELIMIT_RESET.clone(), number(reset));
    }
}

/// A header value formatted on the stack and copied once (one allocation of the exact
/// size), or on the heap when it does not fit (a long name whose quotes and backslashes
/// double in the quoted string); `None` if it does not parse.
fn field(text: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
    struct Stack {
        bytes: [u8; 256],
        len: usize,
    }
    impl std::fmt::Write for Stack {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            let room = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
            room.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut stack = Stack {
        bytes: [0; 256],
        len: 0,
    };
    if stack.write_fmt(text).is_err() {
        return HeaderValue::from_str(&text.to_string()).ok();
    }
    HeaderValue::from_bytes(&stack.bytes[..stack.len]).ok()
}

/// Numbers below this are written from a table made once, so the `X-RateLimit-*` values
/// of most answers (a burst of up to 1,023 tokens, a reset within 17 minutes) allocate
/// nothing.
const SMALL_NUMBERS: u64 = 1024;

/// `n` as a header value: from the table of small numbers (static text, no reference
/// count), or formatted.
fn number(n: u64) -> HeaderValue {
    static SMALL: OnceLock<Box<[&'static str]>> = OnceLock::new();
    if n >= SMALL_NUMBERS {
        return HeaderValue::from(n);
    }
    let table = SMALL.get_or_init(|| {
        // One string of every small number, made once and kept for the process's life.
        let mut all = String::new();
        let mut ends = Vec::with_capacity(SMALL_NUMBERS as usize);
        for i in 0..SMALL_NUMBERS {
            let _ = write!(all, "{i}");
            ends.push(all.len());
        }
        let all: &'static str = Box::leak(all.into_boxed_str());
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let digits = &all[start..end];
                start = end;
                digits
            })
            .collect()
    });
    HeaderValue::from_static(table[n as usize])
}

/// Whole seconds, rounded up, at most a day (no header says a wait no client acts on).
fn whole_seconds(wait: Duration) -> u64 {
    let wait = wait.min(Duration::from_secs(86_400));
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// `name` as a structured-field string: quoted, `"` and `\` escaped, bytes outside
/// printable ASCII replaced by `_`.
pub(crate) fn quote_policy(name: &str) -> Arc<str> {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            ' '..='~' => quoted.push(c),
            _ => quoted.push('_'),
        }
    }
    quoted.push('"');
    quoted.into()
}

/// A rate-limit rejection with the limiter's state, from a service whose headers are
/// [`HttpHeaders`]: what an HTTP 429 answer writes as rate-limit headers. The
/// [`Error`] is its [`source`](std::error::Error::source) (and [`error`](Self::error)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct RateLimitRejection {
    #[source]
    error: Error,
    info: RateLimitInfo,
}

impl RateLimitRejection {
    /// Why the request was refused.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The limiter's state: `remaining` is 0, `reset` the time until a retry may pass.
    pub fn info(&self) -> &RateLimitInfo {
        &self.info
    }

    /// Unwraps the error.
    pub fn into_error(self) -> Error {
        self.error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_are_quoted_and_escaped() {
        assert_eq!(&*quote_policy("payments"), "\"payments\"");
        assert_eq!(&*quote_policy("a\"b\\c\u{e9}\n"), "\"a\\\"b\\\\c__\"");
    }

    #[test]
    fn headers_round_up_to_whole_seconds() {
        let info = RateLimitInfo {
            policy: quote_policy("p"),
            limit: 10,
            remaining: 3,
            reset: Duration::from_millis(1500),
            window: Duration::from_millis(100),
        };
        let mut headers = HeaderMap::new();
        info.write_headers(&mut headers);
        assert_eq!(headers[&RATELIMIT_POLICY], "\"p\";q=10;w=1");
        assert_eq!(headers[&RATELIMIT], "\"p\";r=3;t=2");
        assert_eq!(headers[&X_RATELIMIT_LIMIT], "10");
        assert_eq!(headers[&X_RATELIMIT_REMAINING], "3");
        assert_eq!(headers[&X_RATELIMIT_RESET], "2");
    }

    /// A policy name of 128 quotes (a valid name) doubles in the quoted string and, with
    /// the numbers, no longer fits the stack's 256 bytes: the two IETF headers were
    /// dropped without a word.
    #[test]
    fn a_long_quoted_policy_name_keeps_its_headers() {
        let info = RateLimitInfo {
            policy: quote_policy(&"\"".repeat(128)),
            limit: u32::MAX,
            remaining: u64::MAX,
            reset: Duration::from_secs(60),
            window: Duration::from_secs(60),
        };
        let mut headers = HeaderMap::new();
        info.write_headers(&mut headers);
        let policy = headers[&RATELIMIT_POLICY].to_str().unwrap();
        assert!(
            policy.ends_with(&format!("\"\";q={};w=60", u32::MAX)),
            "{policy}"
        );
        assert_eq!(policy.len(), 2 * 128 + 2 + 3 + 10 + 5);
        assert!(headers.contains_key(&RATELIMIT));
    }
}
