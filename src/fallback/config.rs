//! [`FallbackConfig`]: what a `[policy.<name>.fallback]` section holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tower_prism_core::ConfigError;

use super::http_answer::HttpParts;
use crate::error::ErrorKind;

/// The default status of the configured HTTP answer: 503 Service Unavailable.
///
/// A section that says only `[fallback]` must not turn failures into successes that no
/// client, monitor or load balancer can tell from real answers: 503 still says "not now"
/// (with `Retry-After`: the error's hint, or 1 s). Serving a degraded answer as a
/// success is a choice to write down: `status = 200` and a `body`.
pub const DEFAULT_STATUS: u16 = 503;

/// The longest `body` accepted: 1 MiB. A fallback answer is a small canned reply; it is
/// copied for every answer and kept in memory for the layer's life.
pub const MAX_BODY: usize = 1 << 20;

/// The most `headers` accepted: 64.
pub const MAX_HEADERS: usize = 64;

/// The longest header value accepted: 8 KiB, the size of a whole header line many proxies
/// and servers accept (nginx's default buffer, for one); a longer one would get the
/// answer dropped on its way to the client.
pub const MAX_HEADER_VALUE: usize = 8 << 10;

/// Which errors a fallback answers, and the HTTP answer it gives when it is built from
/// this config ([`FallbackLayer::from_config`](super::FallbackLayer::from_config)).
///
/// Every field has a default, so an empty section is valid: every kind of error is
/// answered with an empty 503, and no response is. The fields other than `on` are read
/// by the configured HTTP answer only; a layer that answers with a closure, a value or a
/// service reads `on` alone (and picks responses with
/// [`on_response`](super::FallbackLayerBuilder::on_response)).
///
/// ```
/// use tower_prism::fallback::FallbackConfig;
/// use tower_prism::ErrorKind;
///
/// let config: FallbackConfig = toml::from_str(r#"
///     on = ["circuit_open", "rate_limited"]
///     status = 200
///     headers = { "content-type" = "application/json", "x-degraded" = "1" }
///     body = '{"items": []}'
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.on, [ErrorKind::CircuitOpen, ErrorKind::RateLimited]);
///
/// let typo = toml::from_str::<FallbackConfig>(r#"on = ["circuit_opened"]"#).unwrap_err();
/// assert!(typo.to_string().contains("invalid `on` = circuit_opened"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FallbackConfig {
    /// The kinds of error answered, by their labels ([`ErrorKind::as_str`]:
    /// `"rate_limited"`, `"concurrency_limited"`, `"circuit_open"`, `"retries_exhausted"`,
    /// `"timeout"`, `"no_healthy_endpoint"`, `"limiter_unavailable"`, `"inner"`); any
    /// other error passes on unchanged. Empty (the default) means every kind, as Polly's
    /// fallback handles every failure unless told otherwise.
    #[serde(with = "super::kinds::labels", skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<ErrorKind>,
    /// Responses answered too, by status (each 100 to 599; default none): a response of
    /// the inner service with one of these is a failure to answer, as Polly's
    /// `ShouldHandle` handles results (`on_status = [502, 503, 504]` serves the fallback
    /// for an upstream's 5xx that retries could not mend). Read by the configured HTTP
    /// answer ([`HttpAnswer`](super::HttpAnswer)); an answer given in code picks its
    /// responses with [`FallbackLayerBuilder::on_response`](super::FallbackLayerBuilder::on_response).
    /// The answer is given an [`Error`](crate::Error) of kind
    /// [`Inner`](ErrorKind::Inner) holding a [`FailedResponse`](super::FailedResponse),
    /// and is counted as one; `on` does not filter these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub on_status: Vec<u16>,
    /// The HTTP answer's status: a final status, 200 to 599 (default
    /// [`DEFAULT_STATUS`], 503).
    pub status: u16,
    /// The HTTP answer's headers, by name (valid header names, case-insensitive, each
    /// once; valid header values of at most [`MAX_HEADER_VALUE`] bytes; at most
    /// [`MAX_HEADERS`]). `content-length` and `transfer-encoding` are refused: the server
    /// sets them from the body. A `retry-after` must be delta-seconds or an HTTP-date.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The HTTP answer's body (at most [`MAX_BODY`] bytes; default empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub body: String,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            on: Vec::new(),
            on_status: Vec::new(),
            status: DEFAULT_STATUS,
            headers: BTreeMap::new(),
            body: String::new(),
        }
    }
}

impl FallbackConfig {
    /// A builder starting from the defaults; [`build`](FallbackConfigBuilder::build)
    /// validates.
    ///
    /// ```
    /// use tower_prism::fallback::FallbackConfig;
    /// use tower_prism::ErrorKind;
    ///
    /// let config = FallbackConfig::builder()
    ///     .on([ErrorKind::CircuitOpen])
    ///     .status(200)
    ///     .header("content-type", "text/plain")
    ///     .body("cached")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.status, 200);
    /// assert!(FallbackConfig::builder().status(1000).build().is_err());
    /// ```
    pub fn builder() -> FallbackConfigBuilder {
        FallbackConfigBuilder {
            config: FallbackConfig::default(),
        }
    }

    /// Checks every value; the error names the field (`on_status`, `status`, `headers`,
    /// `headers.<name>`, `body`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        HttpParts::from_config(self).map(drop)
    }
}

/// Builds a [`FallbackConfig`], one setter per field.
#[derive(Debug, Clone)]
pub struct FallbackConfigBuilder {
    config: FallbackConfig,
}

impl FallbackConfigBuilder {
    /// The kinds of error answered (none listed: every kind).
    pub fn on(mut self, kinds: impl IntoIterator<Item = ErrorKind>) -> Self {
        self.config.on = kinds.into_iter().collect();
        self
    }

    /// The statuses of responses answered too ([`on_status`](FallbackConfig::on_status)).
    pub fn on_status(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.config.on_status = statuses.into_iter().collect();
        self
    }

    /// The HTTP answer's status.
    pub fn status(mut self, status: u16) -> Self {
        self.config.status = status;
        self
    }

    /// The HTTP answer's headers, replacing any set before.
    pub fn headers(mut self, headers: BTreeMap<String, String>) -> Self {
        self.config.headers = headers;
        self
    }

    /// Adds one header to the HTTP answer.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.insert(name.into(), value.into());
        self
    }

    /// The HTTP answer's body.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.config.body = body.into();
        self
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<FallbackConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_answers_every_kind_with_a_503() {
        let config = FallbackConfig::default();
        config.validate().unwrap();
        assert!(config.on.is_empty());
        assert_eq!(config.status, 503);
        assert_eq!(toml::from_str::<FallbackConfig>("").unwrap(), config);
        let text = toml::to_string(&config).unwrap();
        assert_eq!(text.trim(), "status = 503");
        assert_eq!(toml::from_str::<FallbackConfig>(&text).unwrap(), config);
    }

    #[test]
    fn the_config_round_trips_through_toml() {
        let config = FallbackConfig::builder()
            .on([ErrorKind::Timeout, ErrorKind::Inner])
            .status(200)
            .header("x-degraded", "1")
            .body("{}")
            .build()
            .unwrap();
        let text = toml::to_string(&config).unwrap();
        assert!(text.contains(r#"on = ["timeout", "inner"]"#), "{text}");
        assert_eq!(toml::from_str::<FallbackConfig>(&text).unwrap(), config);
    }

    #[test]
    fn an_unknown_field_is_refused() {
        assert!(toml::from_str::<FallbackConfig>("stauts = 200").is_err());
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |b: FallbackConfigBuilder| b.build().unwrap_err().field().to_owned();
        for status in [0, 99, 100, 199, 600, 1000] {
            assert_eq!(field(FallbackConfig::builder().status(status)), "status");
        }
        for status in [200, 204, 429, 599] {
            FallbackConfig::builder().status(status).build().unwrap();
        }
        assert_eq!(
            field(FallbackConfig::builder().header("bad name", "x")),
            "headers"
        );
        assert_eq!(field(FallbackConfig::builder().header("", "x")), "headers");
        assert_eq!(
            field(FallbackConfig::builder().header("x-a", "line\nbreak")),
            "headers.x-a"
        );
        assert_eq!(
            field(FallbackConfig::builder().header("Content-Length", "3")),
            "headers"
        );
        assert_eq!(
            field(FallbackConfig::builder().header("transfer-encoding", "chunked")),
            "headers"
        );
        assert_eq!(
            field(
                FallbackConfig::builder()
                    .header("X-A", "1")
                    .header("x-a", "2")
            ),
            "headers"
        );
        let many = (0..=MAX_HEADERS).map(|i| (format!("x-{i}"), "1".to_owned()));
        assert_eq!(
            field(FallbackConfig::builder().headers(many.collect())),
            "headers"
        );
        let big = "x".repeat(MAX_BODY + 1);
        assert_eq!(field(FallbackConfig::builder().body(big)), "body");
        let long = "x".repeat(MAX_HEADER_VALUE + 1);
        assert_eq!(
            field(FallbackConfig::builder().header("x-a", long)),
            "headers.x-a"
        );
        FallbackConfig::builder()
            .header("x-a", "x".repeat(MAX_HEADER_VALUE))
            .build()
            .unwrap();
        for bad in ["-1", "soon", "1.5", ""] {
            assert_eq!(
                field(FallbackConfig::builder().header("Retry-After", bad)),
                "headers.retry-after",
                "{bad:?}"
            );
        }
        for good in ["0", "120", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            FallbackConfig::builder()
                .header("retry-after", good)
                .build()
                .unwrap();
        }
    }
}
