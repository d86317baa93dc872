//! Builders for the configs: one setter per field, and `build` validates.

use std::time::Duration;

use tower_prism_core::ConfigError;

use crate::config::{BalanceConfig, HealthCheckConfig, OutlierConfig, Strategy};

/// One setter per field: `$field` set to a `$ty`, with its doc.
macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, $field: $ty) -> Self {
                self.config.$field = $field;
                self
            }
        )*
    };
}

/// Builds a [`BalanceConfig`]; start with [`BalanceConfig::builder`]. Unset fields keep
/// their defaults.
#[derive(Debug, Clone, Default)]
pub struct BalanceConfigBuilder {
    config: BalanceConfig,
}

impl BalanceConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> BalanceConfigBuilder {
        BalanceConfigBuilder::default()
    }
}

impl BalanceConfigBuilder {
    setters! {
        /// How endpoints are chosen ([`BalanceConfig::strategy`]).
        strategy: Strategy;
        /// How much requests in flight lower an endpoint's share in a least requests
        /// over weights that differ ([`BalanceConfig::active_request_bias`]).
        active_request_bias: f64;
        /// The latency assumed for an endpoint before it has answered
        /// ([`BalanceConfig::default_rtt`]).
        default_rtt: Duration;
        /// The peak-EWMA time constant ([`BalanceConfig::ewma_decay`]).
        ewma_decay: Duration;
        /// Outlier ejection ([`BalanceConfig::outlier`]; see [`OutlierConfig::builder`]).
        outlier: OutlierConfig;
        /// Active health checks ([`BalanceConfig::health_check`]; see
        /// [`HealthCheckConfig::builder`]).
        health_check: HealthCheckConfig;
        /// The share of endpoints in rotation, in percent, below which picks ignore
        /// health ([`BalanceConfig::healthy_panic_threshold`]).
        healthy_panic_threshold: u32;
    }

    /// The config, once [`BalanceConfig::validate`] accepts it.
    pub fn build(self) -> Result<BalanceConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// Builds an [`OutlierConfig`]; start with [`OutlierConfig::builder`]. Unset fields keep
/// their defaults.
#[derive(Debug, Clone, Default)]
pub struct OutlierConfigBuilder {
    config: OutlierConfig,
}

impl OutlierConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> OutlierConfigBuilder {
        OutlierConfigBuilder::default()
    }
}

impl OutlierConfigBuilder {
    setters! {
        /// Whether endpoints are ejected at all ([`OutlierConfig::enabled`]).
        enabled: bool;
        /// Failures in a row that eject an endpoint; 0 disables this rule
        /// ([`OutlierConfig::consecutive_failures`]).
        consecutive_failures: u32;
        /// Eject an endpoint whose success rate falls below this ratio; `None` disables this
        /// rule ([`OutlierConfig::success_rate_threshold`]).
        success_rate_threshold: Option<f64>;
        /// Calls in the interval before the success-rate rule applies
        /// ([`OutlierConfig::min_requests`]).
        min_requests: u32;
        /// Envoy's statistical success-rate rule: standard deviations below the mean that
        /// eject (default 1.9); `None` disables it
        /// ([`OutlierConfig::success_rate_stdev_factor`]).
        success_rate_stdev_factor: Option<f64>;
        /// Endpoints with enough calls the statistical rule needs
        /// ([`OutlierConfig::success_rate_minimum_hosts`]).
        success_rate_minimum_hosts: u32;
        /// Calls in an interval for the statistical rule to count an endpoint
        /// ([`OutlierConfig::success_rate_request_volume`]).
        success_rate_request_volume: u32;
        /// The success-rate window ([`OutlierConfig::interval`]).
        interval: Duration;
        /// How long the first ejection lasts ([`OutlierConfig::base_ejection_time`]).
        base_ejection_time: Duration;
        /// The longest ejection ([`OutlierConfig::max_ejection_time`]).
        max_ejection_time: Duration;
        /// The most endpoints ejected at once, in percent
        /// ([`OutlierConfig::max_ejection_percent`]).
        max_ejection_percent: u32;
        /// Eject one endpoint even when the percentage allows none
        /// ([`OutlierConfig::always_eject_one_host`]).
        always_eject_one_host: bool;
        /// Whether a passing health check ends an ejection
        /// ([`OutlierConfig::successful_active_health_check_uneject_host`]).
        successful_active_health_check_uneject_host: bool;
    }

    /// The config, once [`OutlierConfig::validate`] accepts it.
    pub fn build(self) -> Result<OutlierConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// Builds a [`HealthCheckConfig`]; start with [`HealthCheckConfig::builder`]. Unset fields
/// keep their defaults.
#[derive(Debug, Clone, Default)]
pub struct HealthCheckConfigBuilder {
    config: HealthCheckConfig,
}

impl HealthCheckConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> HealthCheckConfigBuilder {
        HealthCheckConfigBuilder::default()
    }
}

impl HealthCheckConfigBuilder {
    setters! {
        /// Time between probe rounds ([`HealthCheckConfig::interval`]).
        interval: Duration;
        /// A probe that takes longer fails ([`HealthCheckConfig::timeout`]).
        timeout: Duration;
        /// Passing probes in a row that make an unhealthy endpoint healthy
        /// ([`HealthCheckConfig::healthy_threshold`]).
        healthy_threshold: u32;
        /// Failing probes in a row that make a healthy endpoint unhealthy
        /// ([`HealthCheckConfig::unhealthy_threshold`]).
        unhealthy_threshold: u32;
    }

    /// The config, once [`HealthCheckConfig::validate`] accepts it.
    pub fn build(self) -> Result<HealthCheckConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn builders_set_each_field_and_validate() {
        let outlier = OutlierConfig::builder()
            .enabled(true)
            .consecutive_failures(3)
            .success_rate_threshold(Some(0.9))
            .min_requests(5)
            .interval(Duration::from_secs(1))
            .base_ejection_time(Duration::from_secs(2))
            .max_ejection_time(Duration::from_secs(4))
            .max_ejection_percent(30)
            .build()
            .unwrap();
        assert_eq!(outlier.success_rate_threshold, Some(0.9));
        let health_check = HealthCheckConfig::builder()
            .interval(Duration::from_secs(3))
            .timeout(Duration::from_secs(1))
            .healthy_threshold(1)
            .unhealthy_threshold(2)
            .build()
            .unwrap();
        let config = BalanceConfig::builder()
            .strategy(Strategy::RoundRobin)
            .default_rtt(Duration::from_millis(5))
            .ewma_decay(Duration::from_secs(1))
            .outlier(outlier.clone())
            .health_check(health_check.clone())
            .build()
            .unwrap();
        assert_eq!(config.strategy, Strategy::RoundRobin);
        assert_eq!(config.default_rtt, Duration::from_millis(5));
        assert_eq!(config.outlier, outlier);
        assert_eq!(config.health_check, health_check);
        assert_eq!(
            BalanceConfig::builder().build(),
            Ok(BalanceConfig::default())
        );

        let err = BalanceConfig::builder()
            .default_rtt(Duration::from_secs(120))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "default_rtt");
        let err = OutlierConfig::builder()
            .max_ejection_percent(101)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "max_ejection_percent");
        let err = HealthCheckConfig::builder()
            .healthy_threshold(0)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "healthy_threshold");
    }
}
