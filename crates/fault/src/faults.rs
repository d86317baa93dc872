//! [`StatusFault`] and [`LatencyFault`]: the two faults of a [`FaultConfig`](crate::FaultConfig)
//! that carry more than a rate.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{check_duration_at_most, ConfigError};
use tower_prism_core::GrpcCode;

/// The longest delay a latency fault may inject: `fixed`, `max` and `p99` (one hour), and
/// the cap on a lognormal draw. A delay longer than this is a hung call, which a game day
/// tests better with a deadline above the stage than with a sleep.
pub const MAX_FAULT_LATENCY: Duration = Duration::from_secs(60 * 60);

/// Checks a rate in `[0, 1]` (NaN refused): the share of calls a fault hits.
pub(crate) fn check_rate(field: &'static str, value: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(field, value, "must be between 0 and 1"))
    }
}

/// Answer a share of calls with a status, without calling the service: an HTTP status
/// (`code`, Envoy's `abort.http_status`) or a gRPC one (`grpc_code`, Envoy's
/// `abort.grpc_status`), exactly one of the two. In TOML:
/// `status = { rate = 0.05, code = 503 }` or `status = { rate = 0.05, grpc_code = 14 }`.
///
/// Only a layer that can build the service's response type takes it:
/// [`FaultLayerBuilder::status_with`](crate::FaultLayerBuilder::status_with); a
/// `grpc_code` only one built with
/// [`grpc_status_with`](crate::FaultLayerBuilder::grpc_status_with) (a tower-prism policy
/// with a gRPC profile).
///
/// ```
/// use tower_prism_core::GrpcCode;
/// use tower_prism_fault::StatusFault;
///
/// #[derive(serde::Deserialize)]
/// struct Section { status: StatusFault }
/// let s: Section = toml::from_str("status = { rate = 0.1, grpc_code = 14 }").unwrap();
/// assert_eq!(s.status, StatusFault::grpc(0.1, GrpcCode::Unavailable));
/// s.status.validate().unwrap();
///
/// let both: Section = toml::from_str("status = { rate = 0.1, code = 503, grpc_code = 14 }").unwrap();
/// assert_eq!(both.status.validate().unwrap_err().field(), "status");
/// let unknown: Section = toml::from_str("status = { rate = 0.1, grpc_code = 17 }").unwrap();
/// assert_eq!(unknown.status.validate().unwrap_err().field(), "status.grpc_code");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StatusFault {
    /// The share of calls answered with the status, in `[0, 1]`.
    pub rate: f64,
    /// The HTTP status to answer with, 200 to 599.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The gRPC status to answer with, 0 to 16 (`14` is `UNAVAILABLE`): a Trailers-Only
    /// response (HTTP 200 carrying `grpc-status`), as a gRPC server fails a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_code: Option<u16>,
}

impl StatusFault {
    /// Answer `rate` of calls with the HTTP status `code`.
    pub fn new(rate: f64, code: u16) -> Self {
        StatusFault {
            rate,
            code: Some(code),
            grpc_code: None,
        }
    }

    /// Answer `rate` of calls with the gRPC status `code`.
    pub fn grpc(rate: f64, code: GrpcCode) -> Self {
        StatusFault {
            rate,
            code: None,
            grpc_code: Some(u16::from(code as u8)),
        }
    }

    /// Checks the rate and the code: fields are named `status.rate`, `status.code`,
    /// `status.grpc_code`, and `status` when neither code or both are given.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.answer().map(|_| ())
    }

    /// The checked answer.
    pub(crate) fn answer(&self) -> Result<Answer, ConfigError> {
        check_rate("rate", self.rate).map_err(|e| e.in_section("status"))?;
        match (self.code, self.grpc_code) {
            (Some(code), None) if (200..=599).contains(&code) => Ok(Answer::Http(code)),
            (Some(code), None) => Err(ConfigError::new(
                "status.code",
                code,
                "must be an HTTP status from 200 to 599",
            )),
            (None, Some(code)) => GrpcCode::from_i32(i32::from(code))
                .map(Answer::Grpc)
                .ok_or_else(|| {
                    ConfigError::new(
                        "status.grpc_code",
                        code,
                        "must be a gRPC status from 0 to 16",
                    )
                }),
            (code, _) => Err(ConfigError::new(
                "status",
                if code.is_some() {
                    "code and grpc_code"
                } else {
                    "no code"
                },
                "give one of `code` (an HTTP status) and `grpc_code` (a gRPC status)",
            )),
        }
    }
}

/// What a status fault answers with, once its config is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Http(u16),
    Grpc(GrpcCode),
}

/// Delay a share of calls before they reach the service. The delay is given one of three
/// ways:
///
/// - `fixed`: always this long;
/// - `min` and `max`: uniform between the two (inclusive of `min`);
/// - `median` and `p99`: lognormal, half the delays under `median` and 99 % under `p99`
///   (capped at [`MAX_FAULT_LATENCY`]): the long tail real networks have.
///
/// ```
/// use std::time::Duration;
/// use tower_prism_fault::LatencyFault;
///
/// #[derive(serde::Deserialize)]
/// struct Section { latency: LatencyFault }
/// let s: Section = toml::from_str(r#"latency = { rate = 0.1, min = "20ms", max = "200ms" }"#).unwrap();
/// assert_eq!(s.latency, LatencyFault::uniform(0.1, Duration::from_millis(20), Duration::from_millis(200)));
/// s.latency.validate().unwrap();
///
/// let both: Section = toml::from_str(r#"latency = { rate = 0.1, fixed = "1s", max = "2s" }"#).unwrap();
/// assert_eq!(both.latency.validate().unwrap_err().field(), "latency");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LatencyFault {
    /// The share of calls delayed, in `[0, 1]`.
    pub rate: f64,
    /// A delay of exactly this long.
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub fixed: Option<Duration>,
    /// The shortest uniform delay (with `max`).
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub min: Option<Duration>,
    /// The longest uniform delay (with `min`).
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max: Option<Duration>,
    /// The median lognormal delay (with `p99`); longer than zero.
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub median: Option<Duration>,
    /// The 99th percentile lognormal delay (with `median`); at least `median`.
    #[serde(
        default,
        with = "tower_prism_core::config::option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub p99: Option<Duration>,
}

/// A latency fault's delay, once its config is checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Delay {
    Fixed(Duration),
    Uniform { min: Duration, max: Duration },
    LogNormal { median: Duration, p99: Duration },
}

impl LatencyFault {
    fn empty(rate: f64) -> Self {
        LatencyFault {
            rate,
            fixed: None,
            min: None,
            max: None,
            median: None,
            p99: None,
        }
    }

    /// Delay `rate` of calls by exactly `delay`.
    pub fn fixed(rate: f64, delay: Duration) -> Self {
        LatencyFault {
            fixed: Some(delay),
            ..Self::empty(rate)
        }
    }

    /// Delay `rate` of calls by a uniform draw in `[min, max]`.
    pub fn uniform(rate: f64, min: Duration, max: Duration) -> Self {
        LatencyFault {
            min: Some(min),
            max: Some(max),
            ..Self::empty(rate)
        }
    }

    /// Delay `rate` of calls by a lognormal draw with this median and 99th percentile.
    pub fn lognormal(rate: f64, median: Duration, p99: Duration) -> Self {
        LatencyFault {
            median: Some(median),
            p99: Some(p99),
            ..Self::empty(rate)
        }
    }

    /// Checks the rate and that exactly one shape is given, within
    /// [`MAX_FAULT_LATENCY`]; fields are named `latency.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.delay().map(|_| ())
    }

    /// The checked delay shape.
    pub(crate) fn delay(&self) -> Result<Delay, ConfigError> {
        let in_latency = |e: ConfigError| e.in_section("latency");
        check_rate("rate", self.rate).map_err(in_latency)?;
        for (field, value) in [
            ("fixed", self.fixed),
            ("min", self.min),
            ("max", self.max),
            ("median", self.median),
            ("p99", self.p99),
        ] {
            if let Some(d) = value {
                check_duration_at_most(field, d, MAX_FAULT_LATENCY).map_err(in_latency)?;
            }
        }
        let shape = (self.fixed, self.min, self.max, self.median, self.p99);
        match shape {
            (Some(d), None, None, None, None) => Ok(Delay::Fixed(d)),
            (None, Some(min), Some(max), None, None) => {
                if min > max {
                    Err(ConfigError::new(
                        "latency.min",
                        humantime::format_duration(min),
                        format!(
                            "must be at most latency.max ({})",
                            humantime::format_duration(max)
                        ),
                    ))
                } else {
                    Ok(Delay::Uniform { min, max })
                }
            }
            (None, None, None, Some(median), Some(p99)) => {
                if median.is_zero() {
                    Err(ConfigError::new(
                        "latency.median",
                        "0s",
                        "must be longer than zero",
                    ))
                } else if p99 < median {
                    Err(ConfigError::new(
                        "latency.p99",
                        humantime::format_duration(p99),
                        format!(
                            "must be at least latency.median ({})",
                            humantime::format_duration(median)
                        ),
                    ))
                } else {
                    Ok(Delay::LogNormal { median, p99 })
                }
            }
            _ => Err(ConfigError::new(
                "latency",
                describe_shape(self),
                "give one of: `fixed`; `min` and `max`; `median` and `p99`",
            )),
        }
    }
}

/// Which delay fields a latency fault sets, for an error message.
fn describe_shape(fault: &LatencyFault) -> String {
    let set: Vec<&str> = [
        ("fixed", fault.fixed.is_some()),
        ("min", fault.min.is_some()),
        ("max", fault.max.is_some()),
        ("median", fault.median.is_some()),
        ("p99", fault.p99.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if set.is_empty() {
        "no delay".to_owned()
    } else {
        set.join(" and ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn each_shape_is_accepted() {
        assert_eq!(LatencyFault::fixed(0.5, MS).delay(), Ok(Delay::Fixed(MS)));
        assert_eq!(
            LatencyFault::uniform(1.0, MS, MS).delay(),
            Ok(Delay::Uniform { min: MS, max: MS })
        );
        assert_eq!(
            LatencyFault::lognormal(0.0, MS, MS * 10).delay(),
            Ok(Delay::LogNormal {
                median: MS,
                p99: MS * 10
            })
        );
    }

    #[test]
    fn bad_shapes_name_the_field() {
        let field = |f: LatencyFault| f.validate().unwrap_err().field().to_owned();
        assert_eq!(field(LatencyFault::uniform(0.1, MS * 2, MS)), "latency.min");
        assert_eq!(
            field(LatencyFault::lognormal(0.1, MS * 2, MS)),
            "latency.p99"
        );
        assert_eq!(
            field(LatencyFault::lognormal(0.1, Duration::ZERO, MS)),
            "latency.median"
        );
        assert_eq!(field(LatencyFault::fixed(1.5, MS)), "latency.rate");
        assert_eq!(field(LatencyFault::fixed(f64::NAN, MS)), "latency.rate");
        assert_eq!(
            field(LatencyFault::fixed(0.1, MAX_FAULT_LATENCY + MS)),
            "latency.fixed"
        );
        let no_max = LatencyFault {
            max: None,
            ..LatencyFault::uniform(0.1, MS, MS)
        };
        let err = no_max.validate().unwrap_err();
        assert_eq!((err.field(), err.value()), ("latency", "min"));
        let err = LatencyFault::empty(0.1).validate().unwrap_err();
        assert_eq!(err.value(), "no delay");
    }

    #[test]
    fn status_codes_are_bounded() {
        assert!(StatusFault::new(0.1, 503).validate().is_ok());
        for code in [0, 199, 600, 999] {
            let err = StatusFault::new(0.1, code).validate().unwrap_err();
            assert_eq!(err.field(), "status.code");
        }
        let err = StatusFault::new(-0.1, 503).validate().unwrap_err();
        assert_eq!(err.field(), "status.rate");
    }

    #[test]
    fn grpc_codes_are_bounded_and_exclusive_with_http_codes() {
        for code in [0, 14, 16] {
            let fault = StatusFault {
                grpc_code: Some(code),
                ..StatusFault::grpc(0.1, GrpcCode::Ok)
            };
            assert!(fault.validate().is_ok(), "{code}");
        }
        for code in [17, 99, u16::MAX] {
            let fault = StatusFault {
                grpc_code: Some(code),
                ..StatusFault::grpc(0.1, GrpcCode::Ok)
            };
            assert_eq!(fault.validate().unwrap_err().field(), "status.grpc_code");
        }
        let both = StatusFault {
            grpc_code: Some(14),
            ..StatusFault::new(0.1, 503)
        };
        let err = both.validate().unwrap_err();
        assert_eq!((err.field(), err.value()), ("status", "code and grpc_code"));
        let neither = StatusFault {
            code: None,
            ..StatusFault::new(0.1, 503)
        };
        let err = neither.validate().unwrap_err();
        assert_eq!((err.field(), err.value()), ("status", "no code"));
    }
}
