//! [`FaultConfig`]: what a `[policy.<name>.fault]` section holds, and its builder.

use serde::{Deserialize, Serialize};
use tower_prism_core::config::ConfigError;

use crate::faults::{check_rate, LatencyFault, StatusFault};

/// How far `error + abort + status.rate` may exceed 1 from rounding (`0.7 + 0.2 + 0.1`
/// is not exactly 1 in binary).
const RATE_SUM_SLACK: f64 = 1e-9;

/// Fault-injection settings. The default injects nothing, so an empty section is valid
/// and harmless.
///
/// Per call, at most one of `error`, `abort` and `status` is injected (they are exclusive,
/// so their rates add up to at most 1); `latency` is drawn independently and comes first:
/// a call may be delayed and then fail, as with Envoy's delay and abort.
/// `max_active_faults` caps the calls with a fault at any one time.
///
/// ```
/// use std::time::Duration;
/// use tower_prism_fault::{FaultConfig, LatencyFault, StatusFault};
///
/// let config: FaultConfig = toml::from_str(r#"
///     seed = 42
///     error = 0.05
///     abort = 0.01
///     status = { rate = 0.02, code = 503 }
///     latency = { rate = 0.1, median = "50ms", p99 = "800ms" }
///     max_active_faults = 100
/// "#).unwrap();
/// config.validate().unwrap();
/// assert!(config.enabled); // the default: a reload with `enabled = false` stops it
/// assert_eq!(config.status, Some(StatusFault::new(0.02, 503)));
///
/// let same = FaultConfig::builder()
///     .seed(42)
///     .error(0.05)
///     .abort(0.01)
///     .status(StatusFault::new(0.02, 503))
///     .latency(LatencyFault::lognormal(0.1, Duration::from_millis(50), Duration::from_millis(800)))
///     .max_active_faults(100)
///     .build()
///     .unwrap();
/// assert_eq!(same, config);
///
/// let err = FaultConfig::builder().error(0.7).abort(0.5).build().unwrap_err();
/// assert_eq!(err.field(), "abort");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FaultConfig {
    /// Whether faults are injected at all (default `true`). A disabled stage passes every
    /// call through untouched at the cost of one atomic load: switch a game day on and off
    /// by reloading this flag.
    pub enabled: bool,
    /// The seed of the fault draws: a seeded stage injects the same faults in the same
    /// call order on every run. `None` (the default): seeded once, at random, when built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The share of calls failed with [`Error::Injected`](crate::Error::Injected), in `[0, 1]`.
    pub error: f64,
    /// The share of calls failed with [`Error::Aborted`](crate::Error::Aborted) (a connection
    /// reset), in `[0, 1]`.
    pub abort: f64,
    /// Answer a share of calls with an HTTP or a gRPC status instead of calling the
    /// service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusFault>,
    /// Delay a share of calls before they reach the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyFault>,
    /// At most this many calls with a fault (a delay, an error, an abort or a status) at
    /// any one time, across the stage (Envoy's `max_active_faults`); a call drawing a fault
    /// while as many are active gets none and goes to the service untouched. As in Envoy
    /// (since envoyproxy/envoy#12843), the limit is checked after the draw: a call that
    /// draws no fault is no overflow, and every call takes its draw.
    ///
    /// A fault is active while it is injected, or until its future is dropped: a delay
    /// alone until it is over, as Envoy's since envoyproxy/envoy#14762 (the service's
    /// answer after it is an ordinary call's, and a slow one, such as a long gRPC stream,
    /// does not hold the limit); an error, an abort or a status until it is returned (after
    /// its delay, if it has one). Envoy counts an abort until its stream ends; the stage
    /// cannot see a response's body (it is generic over the response), so it gives the
    /// place back with the answer's head. The two differ only for a body that takes time to
    /// send; the status builders of this crate build empty ones. `0` injects nothing;
    /// `None` (the default): no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_active_faults: Option<u32>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            enabled: true,
            seed: None,
            error: 0.0,
            abort: 0.0,
            status: None,
            latency: None,
            max_active_faults: None,
        }
    }
}

impl FaultConfig {
    /// A builder starting from the default (enabled, injecting nothing).
    pub fn builder() -> FaultConfigBuilder {
        FaultConfigBuilder {
            config: FaultConfig::default(),
        }
    }

    /// Checks every value; the error names the field (`error`, `status.code`,
    /// `status.grpc_code`, `latency.min`...). Rates are in `[0, 1]` (NaN refused) and
    /// `error + abort + status.rate` is at most 1; the sum's error names the last of the
    /// three that is set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_rate("error", self.error)?;
        check_rate("abort", self.abort)?;
        if let Some(status) = &self.status {
            status.validate()?;
        }
        if let Some(latency) = &self.latency {
            latency.validate()?;
        }
        let status_rate = self.status.map_or(0.0, |s| s.rate);
        let sum = self.error + self.abort + status_rate;
        if sum > 1.0 + RATE_SUM_SLACK {
            let field = if status_rate > 0.0 {
                "status.rate"
            } else {
                "abort"
            };
            return Err(ConfigError::new(
                field,
                sum,
                "error + abort + status.rate must be at most 1: at most one of them hits a call",
            ));
        }
        Ok(())
    }

    /// Whether this config injects anything: enabled, with some rate above zero.
    pub fn injects(&self) -> bool {
        self.enabled
            && (self.error > 0.0
                || self.abort > 0.0
                || self.status.is_some_and(|s| s.rate > 0.0)
                || self.latency.is_some_and(|l| l.rate > 0.0))
    }
}

/// Builds a [`FaultConfig`]: [`FaultConfig::builder`]. One setter per field;
/// [`build`](Self::build) validates.
#[derive(Debug, Clone)]
#[must_use = "call `build()` to get the config"]
pub struct FaultConfigBuilder {
    config: FaultConfig,
}

impl FaultConfigBuilder {
    /// Whether faults are injected at all (default `true`).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// Seeds the fault draws, for a reproducible run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// The share of calls failed with an injected error.
    pub fn error(mut self, rate: f64) -> Self {
        self.config.error = rate;
        self
    }

    /// The share of calls failed as an aborted connection.
    pub fn abort(mut self, rate: f64) -> Self {
        self.config.abort = rate;
        self
    }

    /// Answer a share of calls with an HTTP or a gRPC status.
    pub fn status(mut self, status: StatusFault) -> Self {
        self.config.status = Some(status);
        self
    }

    /// Delay a share of calls.
    pub fn latency(mut self, latency: LatencyFault) -> Self {
        self.config.latency = Some(latency);
        self
    }

    /// At most `max` calls with a fault at any one time.
    pub fn max_active_faults(mut self, max: u32) -> Self {
        self.config.max_active_faults = Some(max);
        self
    }

    /// The config, or an error naming the field it refuses.
    pub fn build(self) -> Result<FaultConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_injects_nothing() {
        let config = FaultConfig::default();
        assert!(config.enabled);
        assert!(!config.injects());
        config.validate().unwrap();
        let empty: FaultConfig = toml::from_str("").unwrap();
        assert_eq!(empty, config);
    }

    #[test]
    fn rates_sum_to_at_most_one() {
        let ok = FaultConfig::builder()
            .error(0.7)
            .abort(0.2)
            .status(StatusFault::new(0.1, 503))
            .build();
        assert!(ok.is_ok(), "{ok:?}");
        let err = FaultConfig::builder()
            .error(0.7)
            .abort(0.2)
            .status(StatusFault::new(0.2, 503))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "status.rate");
    }

    #[test]
    fn round_trips_through_toml() {
        let config = FaultConfig::builder()
            .seed(3)
            .error(0.25)
            .max_active_faults(4)
            .latency(LatencyFault::fixed(
                0.5,
                std::time::Duration::from_millis(250),
            ))
            .build()
            .unwrap();
        let text = toml::to_string(&config).unwrap();
        assert_eq!(toml::from_str::<FaultConfig>(&text).unwrap(), config);
    }

    #[test]
    fn status_faults_read_an_http_or_a_grpc_code() {
        let http: FaultConfig = toml::from_str("status = { rate = 0.1, code = 503 }").unwrap();
        assert_eq!(http.status, Some(StatusFault::new(0.1, 503)));
        let grpc = FaultConfig::builder()
            .status(StatusFault::grpc(0.1, tower_prism_core::GrpcCode::NotFound))
            .build()
            .unwrap();
        let text = toml::to_string(&grpc).unwrap();
        assert!(text.contains("grpc_code = 5"), "{text}");
        assert!(!text.lines().any(|line| line.starts_with("code")), "{text}");
        assert_eq!(toml::from_str::<FaultConfig>(&text).unwrap(), grpc);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<FaultConfig>("errors = 0.1").is_err());
        assert!(
            toml::from_str::<FaultConfig>("status = { rate = 0.1, code = 503, x = 1 }").is_err()
        );
    }
}
