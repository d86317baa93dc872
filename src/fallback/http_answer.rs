//! The configured HTTP answer: its parts, checked once when a config is applied, and the
//! [`HttpAnswer`] that builds a response from them per fallback.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use http::header::{CONTENT_LENGTH, RETRY_AFTER, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tower_prism_core::config::{quote_bounded, MAX_QUOTED};
use tower_prism_core::internal::{parse_retry_after, response_retry_after};
use tower_prism_core::ConfigError;

use super::answer::Answer;
use super::config::{FallbackConfig, DEFAULT_STATUS, MAX_BODY, MAX_HEADERS, MAX_HEADER_VALUE};
use super::failed_response::{FailedResponse, StatusSet};
use crate::error::{retry_after_value, Error, ErrorKind, DEFAULT_RETRY_AFTER};

/// A [`FallbackConfig`]'s HTTP answer, parsed: what [`HttpAnswer`] copies into each
/// response. Parsing it is the config's validation, so a config that validates always
/// builds.
#[derive(Debug)]
pub(crate) struct HttpParts {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    /// Whether to pass on the error's retry-after hint: the status is one that
    /// `Retry-After` goes with (429, 503) and the config does not set the header itself.
    retry_after: bool,
}

impl HttpParts {
    /// The default config's answer: an empty 503 that passes on a retry-after hint.
    fn empty() -> Self {
        HttpParts {
            status: StatusCode::SERVICE_UNAVAILABLE,
            headers: HeaderMap::new(),
            body: String::new(),
            retry_after: true,
        }
    }

    pub(crate) fn from_config(config: &FallbackConfig) -> Result<Self, ConfigError> {
        StatusSet::check(&config.on_status)?;
        let status = match config.status {
            200..=599 => StatusCode::from_u16(config.status)
                .map_err(|_| ConfigError::new("status", config.status, "not an HTTP status"))?,
            _ => {
                return Err(ConfigError::new(
                    "status",
                    config.status,
                    "must be a final HTTP status, from 200 to 599",
                ))
            }
        };
        if config.headers.len() > MAX_HEADERS {
            return Err(ConfigError::new(
                "headers",
                format!("{} headers", config.headers.len()),
                format!("at most {MAX_HEADERS} headers"),
            ));
        }
        let mut headers = HeaderMap::with_capacity(config.headers.len());
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new("headers", name, "not a valid header name"))?;
            if header == CONTENT_LENGTH || header == TRANSFER_ENCODING {
                return Err(ConfigError::new(
                    "headers",
                    name,
                    "set by the server from the body; leave it out",
                ));
            }
            let field = || format!("headers.{}", quote_bounded(header.as_str(), MAX_QUOTED));
            if value.len() > MAX_HEADER_VALUE {
                return Err(ConfigError::new(
                    field(),
                    format!("{} bytes", value.len()),
                    format!("at most {MAX_HEADER_VALUE} bytes"),
                ));
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                ConfigError::new(
                    field(),
                    value.escape_debug(),
                    "not a valid header value (visible ASCII, spaces and tabs)",
                )
            })?;
            // Clients read it to schedule their next try: one they cannot parse is worse
            // than none.
            if header == RETRY_AFTER && parse_retry_after(&value, SystemTime::now()).is_none() {
                return Err(ConfigError::new(
                    field(),
                    quote_bounded(value.to_str().unwrap_or_default(), MAX_QUOTED),
                    "must be delta-seconds (a whole number) or an HTTP-date",
                ));
            }
            if headers.insert(header.clone(), value).is_some() {
                return Err(ConfigError::new(
                    "headers",
                    name,
                    "listed twice (header names are case-insensitive)",
                ));
            }
        }
        if config.body.len() > MAX_BODY {
            return Err(ConfigError::new(
                "body",
                format!("{} bytes", config.body.len()),
                format!("at most {MAX_BODY} bytes"),
            ));
        }
        let retry_after =
            matches!(status.as_u16(), 429 | 503) && !headers.contains_key(RETRY_AFTER);
        Ok(HttpParts {
            status,
            headers,
            body: config.body.clone(),
            retry_after,
        })
    }

    /// The answer to `error`: a copy of the configured parts and the error's kind as an
    /// extension. When the status is 429 or 503 and the config sets no `Retry-After`, as
    /// `http_errors()` does: `Retry-After` from the error's hint (1 s when it has none;
    /// none for a [permanent](Error::is_permanent) error) and, for a rate limiter's
    /// rejection, its rate-limit headers (those the config does not set itself).
    pub(crate) fn response<B: From<String>>(&self, error: &Error) -> Response<B> {
        let mut response = Response::new(B::from(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        if self.retry_after {
            if let Some(info) = error.rate_limit() {
                let mut limits = HeaderMap::new();
                info.write_headers(&mut limits);
                for (name, value) in &limits {
                    if !response.headers().contains_key(name) {
                        response.headers_mut().insert(name.clone(), value.clone());
                    }
                }
            }
            // None for a request no wait admits, which a client would retry for ever.
            if !error.is_permanent() {
                let wait = error.retry_after().unwrap_or(DEFAULT_RETRY_AFTER);
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, retry_after_value(wait));
            }
        }
        response.extensions_mut().insert(FallbackCause {
            kind: error.kind(),
            status: error
                .get_ref()
                .downcast_ref::<FailedResponse>()
                .and_then(FailedResponse::status),
        });
        response
    }
}

/// The HTTP answer in force, shared by a layer's [`HttpAnswer`] and its handle (which
/// swaps it on reconfigure). Read on the fallback path only.
#[derive(Debug)]
pub(crate) struct HttpSlot {
    parts: RwLock<Arc<HttpParts>>,
    /// The statuses answered as failures (`on_status`): read on every response.
    statuses: StatusSet,
}

impl HttpSlot {
    /// A slot holding the default config's answer until the layer is built.
    pub(crate) fn new() -> Arc<Self> {
        debug_assert_eq!(FallbackConfig::default().status, DEFAULT_STATUS);
        Arc::new(HttpSlot {
            parts: RwLock::new(Arc::new(HttpParts::empty())),
            statuses: StatusSet::default(),
        })
    }

    pub(crate) fn load(&self) -> Arc<HttpParts> {
        self.parts.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `parts` and `config`'s statuses in force (both checked, by
    /// [`HttpParts::from_config`]).
    pub(crate) fn store(&self, parts: HttpParts, config: &FallbackConfig) {
        *self.parts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(parts);
        self.statuses.store(&config.on_status);
    }
}

/// The answer a [`FallbackLayer`](super::FallbackLayer) built from a config gives: an
/// `http::Response<B>` with the configured status, headers and body, for any body type
/// made from a `String` (axum's `Body`, http-body-util's `Full<Bytes>`, `String`).
///
/// The parts are the ones in force when the error arrives, so
/// [`FallbackHandle::reconfigure`](super::FallbackHandle::reconfigure) changes the next answer. Each answer copies them (a
/// fallback is the error path, not the hot path); a read lock is held only for that
/// copy.
///
/// When the status is 429 or 503 and the config sets no `Retry-After`, the error's own
/// retry-after hint (a rate limiter's, an open breaker's, the `Retry-After` of an
/// upstream's 429 or 503 answered by its status; 1 s when it has none) is passed
/// on as `Retry-After`, in whole seconds, with a rate limiter's rate-limit headers, as
/// [`Error::to_response`] writes them. The response carries a
/// [`FallbackCause`] extension naming the error's kind.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub(crate) slot: Arc<HttpSlot>,
}

impl<B: From<String>> Answer<Response<B>> for HttpAnswer {
    type Error = Infallible;
    type Future = Ready<Result<Response<B>, Infallible>>;

    fn answer(&self, error: Error) -> Self::Future {
        ready(Ok(self.slot.load().response(&error)))
    }

    #[inline]
    fn failure(&self, response: &Response<B>) -> Option<Error> {
        let status = response.status();
        self.slot.statuses.contains(status).then(|| {
            let retry_after = response_retry_after(response);
            Error::from_box(Box::new(FailedResponse::new(Some(status), retry_after)))
        })
    }
}

/// A response extension on every [`HttpAnswer`]: the kind of error the fallback replaced.
/// A server's logging or metrics layer above the fallback reads it to tell a fallback
/// answer from a real one, and why it was given.
///
/// ```
/// use http::Response;
/// use tower_prism::fallback::FallbackCause;
/// use tower_prism::ErrorKind;
///
/// # let response: Response<String> = Response::new(String::new());
/// if let Some(cause) = response.extensions().get::<FallbackCause>() {
///     tracing::info!(reason = %cause.kind(), "served a fallback");
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackCause {
    kind: ErrorKind,
    status: Option<StatusCode>,
}

impl FallbackCause {
    /// The kind of error the fallback answered ([`Inner`](ErrorKind::Inner) for a
    /// response answered by its status).
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The status of the inner service's response the fallback answered in its place
    /// ([`FallbackConfig::on_status`]); `None` when it answered an error.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parts(config: FallbackConfig) -> HttpParts {
        HttpParts::from_config(&config).unwrap()
    }

    fn shed(wait: Duration) -> Error {
        Error::from_box(Box::new(tower_prism_limit::Error::RateLimited {
            retry_after: wait,
        }))
    }

    #[test]
    fn the_response_carries_the_configured_parts_and_the_cause() {
        let config = FallbackConfig::builder()
            .status(200)
            .header("Content-Type", "application/json")
            .body("{}")
            .build()
            .unwrap();
        let response: Response<String> = parts(config).response(&shed(Duration::from_secs(2)));
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert!(
            response.headers().get(RETRY_AFTER).is_none(),
            "not with a 200"
        );
        assert_eq!(response.body(), "{}");
        let cause = response.extensions().get::<FallbackCause>().unwrap();
        assert_eq!(cause.kind(), ErrorKind::RateLimited);
    }

    #[test]
    fn a_503_passes_on_the_errors_hint_or_1s_unless_the_config_sets_one() {
        let wait = Duration::from_millis(1500);
        let response: Response<String> = parts(FallbackConfig::default()).response(&shed(wait));
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[RETRY_AFTER], "2");

        let config = FallbackConfig::builder()
            .header("retry-after", "60")
            .build()
            .unwrap();
        let response: Response<String> = parts(config).response(&shed(wait));
        assert_eq!(response.headers()[RETRY_AFTER], "60");

        // a 503 always says when to come back, as `http_errors()` does: soon
        let no_hint = Error::from_box("refused".into());
        let response: Response<String> = parts(FallbackConfig::default()).response(&no_hint);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }

    #[test]
    fn the_empty_parts_are_the_default_configs() {
        let empty = HttpParts::empty();
        let default = parts(FallbackConfig::default());
        assert_eq!(
            (empty.status, &empty.headers, &empty.body, empty.retry_after),
            (
                default.status,
                &default.headers,
                &default.body,
                default.retry_after
            )
        );
    }

    #[test]
    fn a_huge_bad_header_value_is_quoted_bounded() {
        let config = FallbackConfig {
            headers: [("x-a".to_owned(), "\n".repeat(10_000))].into(),
            ..FallbackConfig::default()
        };
        let err = HttpParts::from_config(&config).unwrap_err();
        assert!(err.to_string().len() < 300, "{err}");
    }
}
