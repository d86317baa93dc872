//! [`ConcurrencyConfigBuilder`]: a [`ConcurrencyConfig`] in code, one setter per field.

use std::time::Duration;

use tower_prism_core::config::ConfigError;

use super::algorithm_config::LimitAlgorithm;
use super::config::ConcurrencyConfig;

/// Builds a [`ConcurrencyConfig`]; [`build`](Self::build) validates it. From
/// [`ConcurrencyConfig::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_prism_limit::concurrency::{ConcurrencyConfig, GradientConfig};
///
/// let cfg = ConcurrencyConfig::builder()
///     .initial_limit(20)
///     .min_limit(2)
///     .max_limit(200)
///     .max_wait(Duration::from_millis(50))
///     .algorithm(GradientConfig::default())
///     .build()
///     .unwrap();
/// assert_eq!(cfg.max_limit, 200);
/// let err = ConcurrencyConfig::builder().initial_limit(500).build().unwrap_err();
/// assert_eq!(err.field(), "initial_limit");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ConcurrencyConfigBuilder {
    config: ConcurrencyConfig,
}

impl ConcurrencyConfigBuilder {
    pub(crate) fn new(config: ConcurrencyConfig) -> Self {
        ConcurrencyConfigBuilder { config }
    }

    /// The limit to start from (default 20).
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.config.initial_limit = limit;
        self
    }

    /// The limit never drops below this (default 1).
    pub fn min_limit(mut self, limit: u32) -> Self {
        self.config.min_limit = limit;
        self
    }

    /// The limit never rises above this (default 200).
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.config.max_limit = limit;
        self
    }

    /// Lets a request over the limit wait this long for a permit instead of failing at
    /// once (default: no wait).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = Some(wait);
        self
    }

    /// Lets at most `n` requests wait for a permit at once (with
    /// [`max_wait`](Self::max_wait)); one more is refused at once (default: no cap).
    pub fn max_waiters(mut self, n: u32) -> Self {
        self.config.max_waiters = Some(n);
        self
    }

    /// How the limit moves: a [`VegasConfig`](super::VegasConfig) (the default), an
    /// [`AimdConfig`](super::AimdConfig), a [`GradientConfig`](super::GradientConfig), or a
    /// [`LimitAlgorithm`].
    pub fn algorithm(mut self, algorithm: impl Into<LimitAlgorithm>) -> Self {
        self.config.algorithm = algorithm.into();
        self
    }

    /// Validates and returns the config; the error names the first bad field.
    pub fn build(self) -> Result<ConcurrencyConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
