//! [`DeadlineConfig`]: serde (TOML-friendly, humantime durations), its builder and its
//! validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{check_duration, check_duration_at_most, MAX_DURATION};
use tower_prism_core::ConfigError;

use crate::header::HeaderSpec;

/// The longest `timeout`: core's [`MAX_DURATION`], 366 days.
pub const MAX_DEADLINE_TIMEOUT: Duration = MAX_DURATION;

/// How a deadline header's value is written and read.
///
/// In TOML: `header_format = "grpc"`, `"milliseconds"`, `"seconds"` or `"auto"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HeaderFormat {
    /// [`Grpc`](Self::Grpc) when the header is `grpc-timeout`, else
    /// [`Milliseconds`](Self::Milliseconds) (the default).
    #[default]
    Auto,
    /// gRPC's `grpc-timeout` syntax: at most 8 digits and a unit, `H` (hours), `M`
    /// (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds) or `n`
    /// (nanoseconds): `"250m"`. Written in the finest unit whose value fits in 8 digits.
    Grpc,
    /// A whole number of milliseconds: `"250"` (as Envoy's
    /// `x-envoy-expected-rq-timeout-ms`).
    Milliseconds,
    /// Seconds: read as a whole or decimal number (`"2"`, `"0.25"`), written as whole
    /// seconds with up to three decimals (`"0.25"`).
    Seconds,
}

impl HeaderFormat {
    /// The format as a config file spells it (`"auto"`, `"grpc"`, ...), for errors.
    pub(crate) fn as_toml(self) -> &'static str {
        match self {
            HeaderFormat::Auto => "auto",
            HeaderFormat::Grpc => "grpc",
            HeaderFormat::Milliseconds => "milliseconds",
            HeaderFormat::Seconds => "seconds",
        }
    }
}

/// A deadline stage's configuration: the policy's total timeout and the header a
/// request's own deadline travels in. The policy name and the
/// [`Carrier`](crate::Carrier) are given on the [layer builder](crate::DeadlineLayer::builder).
///
/// Build one with [`DeadlineConfig::builder`] (whose `build` validates), or deserialize it
/// (unknown fields are errors) and [`validate`](Self::validate) it: every error names the
/// field.
///
/// ```
/// use std::time::Duration;
/// use tower_prism_deadline::{DeadlineConfig, HeaderFormat};
///
/// let config = DeadlineConfig::builder()
///     .timeout(Duration::from_secs(2))
///     .header("grpc-timeout")
///     .build()
///     .unwrap();
/// assert_eq!(config.timeout, Some(Duration::from_secs(2)));
///
/// let config: DeadlineConfig = toml::from_str(r#"
///     timeout = "1s 500ms"
///     header = "x-request-timeout-ms"
///     header_format = "milliseconds"
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.header_format, HeaderFormat::Milliseconds);
/// assert!(config.propagate);
///
/// let err = DeadlineConfig::builder().header("bad header").build().unwrap_err();
/// assert_eq!(err.field(), "header");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DeadlineConfig {
    /// The policy's total timeout over everything below the stage (default: none, and
    /// then only a request's own deadline applies). Longer than zero, at most
    /// [`MAX_DEADLINE_TIMEOUT`].
    ///
    /// It starts when the stage is called with a request. Waiting for the stack to be
    /// ready before that (`poll_ready`: a balancer whose every endpoint is still
    /// connecting, say) comes first and is not bounded by it, as with tower's `Timeout`:
    /// bound that wait where you make it
    /// (`tokio::time::timeout(limit, service.ready()).await`).
    #[serde(
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// An HTTP header a request's deadline is read from (the time left, in
    /// `header_format`), and the time left is written into for the next hop: for example
    /// `"grpc-timeout"` or `"x-request-timeout-ms"` (default: none). Read and written only
    /// by a carrier that knows headers ([`HttpRequest`](crate::HttpRequest)). The time
    /// left counts from when the request reached the stack: a wait in a rate limit's or a
    /// concurrency limit's queue above this stage spends it (the policy's own `timeout`
    /// starts at this stage, as Polly's total timeout starts after its rate limiter).
    /// A header HTTP itself uses (`content-length`, `host`, `te`, ...) is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// How the header's value is written and read (default [`HeaderFormat::Auto`]).
    pub header_format: HeaderFormat,
    /// Whether the deadline is written into the outgoing request: the header, when one is
    /// set (default: yes). The `RequestDeadline` extension of an HTTP request is set
    /// either way, as stages below read it.
    pub propagate: bool,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        DeadlineConfig {
            timeout: None,
            header: None,
            header_format: HeaderFormat::Auto,
            propagate: true,
        }
    }
}

impl DeadlineConfig {
    /// A builder starting from the defaults: no policy timeout, no header, format
    /// [`HeaderFormat::Auto`], propagation on.
    pub fn builder() -> DeadlineConfigBuilder {
        DeadlineConfigBuilder {
            config: DeadlineConfig::default(),
        }
    }

    /// A builder starting from this config, to change a few values.
    pub fn to_builder(&self) -> DeadlineConfigBuilder {
        DeadlineConfigBuilder {
            config: self.clone(),
        }
    }

    /// Checks every value, or returns an error naming the first bad field (`timeout`,
    /// `header`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(timeout) = self.timeout {
            check_duration("timeout", timeout)?;
            check_duration_at_most("timeout", timeout, MAX_DEADLINE_TIMEOUT)?;
        }
        self.header_spec().map(drop)
    }

    /// The parsed header and its resolved format, or an error naming `header`.
    pub(crate) fn header_spec(&self) -> Result<Option<HeaderSpec>, ConfigError> {
        self.header
            .as_deref()
            .map(|name| HeaderSpec::new(name, self.header_format))
            .transpose()
    }
}

/// Builds a [`DeadlineConfig`], from [`DeadlineConfig::builder`]: one setter per field;
/// [`build`](Self::build) validates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "call `build()` to get the config"]
pub struct DeadlineConfigBuilder {
    config: DeadlineConfig,
}

impl DeadlineConfigBuilder {
    /// Sets the policy's total timeout (`None`: only a request's own deadline applies).
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.timeout = timeout.into();
        self
    }
    /// Sets the header a request's deadline is read from and written into.
    pub fn header(mut self, header: impl Into<String>) -> Self {
        self.config.header = Some(header.into());
        self
    }
    /// Reads and writes no header (the default).
    pub fn without_header(mut self) -> Self {
        self.config.header = None;
        self
    }
    /// Sets how the header's value is written and read.
    pub fn header_format(mut self, format: HeaderFormat) -> Self {
        self.config.header_format = format;
        self
    }
    /// Whether the deadline is written into the outgoing request's header.
    pub fn propagate(mut self, propagate: bool) -> Self {
        self.config.propagate = propagate;
        self
    }

    /// Checks every value and returns the config, or an error naming the first bad field.
    pub fn build(self) -> Result<DeadlineConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_pass_through() {
        let config = DeadlineConfig::default();
        config.validate().unwrap();
        assert_eq!(config.timeout, None);
        assert!(config.propagate);
    }

    #[test]
    fn a_zero_or_huge_timeout_is_refused_by_name() {
        for bad in [
            Duration::ZERO,
            MAX_DEADLINE_TIMEOUT + Duration::from_secs(1),
        ] {
            let err = DeadlineConfig::builder().timeout(bad).build().unwrap_err();
            assert_eq!(err.field(), "timeout");
        }
        DeadlineConfig::builder()
            .timeout(MAX_DEADLINE_TIMEOUT)
            .build()
            .unwrap();
    }

    #[test]
    fn a_bad_header_name_is_refused() {
        for bad in ["", "with space", "colon:", "é"] {
            let err = DeadlineConfig::builder().header(bad).build().unwrap_err();
            assert_eq!(err.field(), "header", "{bad:?}");
        }
    }

    #[test]
    fn toml_round_trips_and_refuses_unknown_fields() {
        let config: DeadlineConfig = toml::from_str(
            "timeout = \"250ms\"\nheader = \"grpc-timeout\"\nheader_format = \"grpc\"\npropagate = false",
        )
        .unwrap();
        assert_eq!(config.timeout, Some(Duration::from_millis(250)));
        assert_eq!(config.header_format, HeaderFormat::Grpc);
        assert!(!config.propagate);
        let text = toml::to_string(&config).unwrap();
        assert_eq!(toml::from_str::<DeadlineConfig>(&text).unwrap(), config);
        assert!(toml::from_str::<DeadlineConfig>("timout = \"1s\"").is_err());
        assert!(toml::from_str::<DeadlineConfig>("header_format = \"minutes\"").is_err());
    }
}
