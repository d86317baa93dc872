//! The DNS discovery config: which name to resolve, on which port, how often.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{check_duration, check_duration_at_most, duration};
use tower_prism_core::ConfigError;

use crate::config::MAX_INTERVAL;

/// The shortest `interval` between two resolutions: 100ms. A shorter one would turn the
/// refresh task into a busy loop against the resolver.
pub const MIN_DNS_INTERVAL: Duration = Duration::from_millis(100);

/// The longest host name DNS allows (RFC 1035: 253 characters as text).
const MAX_HOST_LEN: usize = 253;

/// Where [`DnsDiscovery`](crate::DnsDiscovery) takes a balancer's endpoints from: every
/// `interval`, `host` is resolved and each address (with `port`) becomes an endpoint.
///
/// In a file (`host` has no default; the rest do):
///
/// ```
/// use std::time::Duration;
/// use tower_prism_balance::DnsConfig;
///
/// let config: DnsConfig = toml::from_str(r#"
///     host = "backend.default.svc.cluster.local"
///     port = 8080
///     interval = "10s"
///     timeout = "1s"
/// "#).unwrap();
/// config.validate().unwrap();
///
/// // the same in code; `build` validates
/// let built = DnsConfig::builder()
///     .host("backend.default.svc.cluster.local")
///     .port(8080)
///     .interval(Duration::from_secs(10))
///     .timeout(Duration::from_secs(1))
///     .build()?;
/// assert_eq!(config, built);
/// # Ok::<(), tower_prism_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DnsConfig {
    /// The name to resolve: a Kubernetes headless service, or any name with several A/AAAA
    /// records. No default: an empty host is refused by [`validate`](Self::validate).
    pub host: String,
    /// The port of every endpoint. Default 80; 0 is refused.
    pub port: u16,
    /// Time between two resolutions. Default 5s, at least [`MIN_DNS_INTERVAL`] (100ms), at
    /// most [`MAX_INTERVAL`] (1h).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A resolution that takes longer fails (and the last good set of endpoints stays).
    /// Default 2s, at most [`MAX_INTERVAL`] (1h).
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            host: String::new(),
            port: 80,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        }
    }
}

impl DnsConfig {
    /// A config for `host` and `port`, with the default interval and timeout.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        DnsConfig {
            host: host.into(),
            port,
            ..DnsConfig::default()
        }
    }

    /// A builder starting from the defaults.
    pub fn builder() -> DnsConfigBuilder {
        DnsConfigBuilder::default()
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_host(&self.host)?;
        if self.port == 0 {
            return Err(ConfigError::new("port", 0, "must be at least 1"));
        }
        check_duration_at_most("interval", self.interval, MAX_INTERVAL)?;
        if self.interval < MIN_DNS_INTERVAL {
            return Err(ConfigError::new(
                "interval",
                humantime::format_duration(self.interval),
                format!(
                    "must be at least {}",
                    humantime::format_duration(MIN_DNS_INTERVAL)
                ),
            ));
        }
        check_duration("timeout", self.timeout)?;
        check_duration_at_most("timeout", self.timeout, MAX_INTERVAL)?;
        Ok(())
    }
}

/// A host is a non-empty name of printable characters, no longer than DNS allows.
fn check_host(host: &str) -> Result<(), ConfigError> {
    let quoted = || tower_prism_core::config::quote_bounded(host, 64);
    if host.is_empty() {
        return Err(ConfigError::new("host", "\"\"", "must not be empty"));
    }
    if host.len() > MAX_HOST_LEN {
        return Err(ConfigError::new(
            "host",
            quoted(),
            format!("must be at most {MAX_HOST_LEN} characters"),
        ));
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(
            "host",
            quoted(),
            "must not contain spaces or control characters",
        ));
    }
    Ok(())
}

/// Builds a [`DnsConfig`]; start with [`DnsConfig::builder`]. Unset fields keep their
/// defaults (and `host` must be set).
#[derive(Debug, Clone, Default)]
pub struct DnsConfigBuilder {
    config: DnsConfig,
}

impl DnsConfigBuilder {
    /// The name to resolve ([`DnsConfig::host`]).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.config.host = host.into();
        self
    }

    /// The port of every endpoint ([`DnsConfig::port`]).
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = port;
        self
    }

    /// Time between two resolutions ([`DnsConfig::interval`]).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// How long one resolution may take ([`DnsConfig::timeout`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The config, once [`DnsConfig::validate`] accepts it.
    pub fn build(self) -> Result<DnsConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: DnsConfig) -> String {
        config.validate().unwrap_err().field().to_owned()
    }

    #[test]
    fn defaults_need_only_a_host() {
        assert_eq!(field_of(DnsConfig::default()), "host");
        DnsConfig::new("localhost", 8080).validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_field() {
        let ok = DnsConfig::new("svc.local", 80);
        assert_eq!(
            field_of(DnsConfig {
                host: "a b".into(),
                ..ok.clone()
            }),
            "host"
        );
        assert_eq!(
            field_of(DnsConfig {
                host: "x".repeat(254),
                ..ok.clone()
            }),
            "host"
        );
        assert_eq!(
            field_of(DnsConfig {
                port: 0,
                ..ok.clone()
            }),
            "port"
        );
        let interval = Duration::from_millis(99);
        assert_eq!(
            field_of(DnsConfig {
                interval,
                ..ok.clone()
            }),
            "interval"
        );
        let interval = MAX_INTERVAL + Duration::from_secs(1);
        assert_eq!(
            field_of(DnsConfig {
                interval,
                ..ok.clone()
            }),
            "interval"
        );
        let timeout = Duration::ZERO;
        assert_eq!(
            field_of(DnsConfig {
                timeout,
                ..ok.clone()
            }),
            "timeout"
        );
        let timeout = MAX_INTERVAL * 2;
        assert_eq!(field_of(DnsConfig { timeout, ..ok }), "timeout");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<DnsConfig>("host = \"a\"\nname = \"b\"").unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
    }
}
