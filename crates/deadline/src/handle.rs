//! [`DeadlineHandle`]: the state every service of one deadline layer shares, and what it
//! reports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_prism_core::internal::{lock, nanos};
use tower_prism_core::ConfigError;

use crate::config::DeadlineConfig;
use crate::error::ExpiryReason;
use crate::header::HeaderSpec;
use crate::metrics::Metrics;

/// The state every service of one layer shares.
#[derive(Debug)]
struct Shared {
    name: String,
    /// The policy timeout in nanoseconds, 0 for none: read on every call without a lock.
    timeout_nanos: AtomicU64,
    propagate: AtomicBool,
    /// Fixed at build (the hot path reads it without indirection): `reconfigure` refuses a
    /// config with another header.
    header: Option<HeaderSpec>,
    /// The config in force; its lock also serialises reconfigurations (never taken on a
    /// call's path).
    config: Mutex<DeadlineConfig>,
    metrics: Metrics,
    expired_policy: AtomicU64,
    expired_request: AtomicU64,
}

/// A deadline stage's shared state: its name, timeout, header and counts. Every service
/// of one [`DeadlineLayer`](crate::DeadlineLayer), and every clone of the handle, is the
/// same stage; reach it with [`DeadlineLayer::handle`](crate::DeadlineLayer::handle) or
/// [`Deadline::handle`](crate::Deadline::handle).
///
/// ```
/// use std::time::Duration;
/// use tower_prism_deadline::{DeadlineConfig, DeadlineLayer};
///
/// let layer = DeadlineLayer::from_config(&DeadlineConfig::default()).unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.snapshot().timeout, None);
/// let tighter = DeadlineConfig::builder().timeout(Duration::from_secs(1)).build().unwrap();
/// handle.reconfigure(&tighter).unwrap();
/// assert_eq!(handle.snapshot().timeout, Some(Duration::from_secs(1)));
/// ```
#[derive(Debug, Clone)]
pub struct DeadlineHandle {
    shared: Arc<Shared>,
}

impl DeadlineHandle {
    /// A new stage named `name` (the `name` label of its metrics, and its log events), or an
    /// error naming the config field it refuses.
    pub(crate) fn new(name: String, config: &DeadlineConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let header = config.header_spec()?;
        let shared = Shared {
            metrics: Metrics::new(&name),
            name,
            timeout_nanos: AtomicU64::new(config.timeout.map_or(0, nanos)),
            propagate: AtomicBool::new(config.propagate),
            header,
            config: Mutex::new(config.clone()),
            expired_policy: AtomicU64::new(0),
            expired_request: AtomicU64::new(0),
        };
        Ok(DeadlineHandle {
            shared: Arc::new(shared),
        })
    }

    /// The policy name used in metrics and events.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The config in force (the one built with, or the last one applied by
    /// [`reconfigure`](Self::reconfigure)).
    pub fn config(&self) -> DeadlineConfig {
        lock(&self.shared.config).clone()
    }

    /// Whether [`reconfigure`](Self::reconfigure) would accept `config`, without applying
    /// it: valid, with the same header and header format as the running stage. A reload
    /// spanning several stages checks each before it changes any.
    pub fn check(&self, config: &DeadlineConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let header = config.header_spec()?;
        let running = &self.shared.header;
        if header.as_ref().map(HeaderSpec::name) != running.as_ref().map(HeaderSpec::name) {
            return Err(ConfigError::new(
                "header",
                config.header.as_deref().unwrap_or("(none)"),
                "cannot change on a running deadline stage; build a new one",
            ));
        }
        if header != *running {
            return Err(ConfigError::new(
                "header_format",
                config.header_format.as_toml(),
                "cannot change on a running deadline stage; build a new one",
            ));
        }
        Ok(())
    }

    /// Applies a new config to the running stage, all or nothing: `timeout` and
    /// `propagate` apply from the next call (calls in flight keep the deadline they
    /// started with). An invalid config is refused with the error
    /// [`DeadlineConfig::validate`] gives. The header and its format are fixed when the
    /// stage is built (the hot path reads them without indirection): a config with
    /// another one is refused as a whole, with a [`ConfigError`] naming the field.
    pub fn reconfigure(&self, config: &DeadlineConfig) -> Result<(), ConfigError> {
        self.check(config)?;
        let s = &self.shared;
        let mut current = lock(&s.config);
        s.timeout_nanos
            .store(config.timeout.map_or(0, nanos), Relaxed);
        s.propagate.store(config.propagate, Relaxed);
        *current = config.clone();
        drop(current);
        tracing::info!(name = %s.name, timeout = ?config.timeout, "deadline reconfigured");
        Ok(())
    }

    /// What the stage is doing now.
    pub fn snapshot(&self) -> DeadlineSnapshot {
        let s = &self.shared;
        let expired_policy = s.expired_policy.load(Relaxed);
        let expired_request = s.expired_request.load(Relaxed);
        DeadlineSnapshot {
            timeout: self.timeout(),
            propagate: s.propagate.load(Relaxed),
            expired: expired_policy + expired_request,
            expired_policy,
            expired_request,
        }
    }

    /// The policy timeout in force (one atomic load).
    #[inline]
    pub(crate) fn timeout(&self) -> Option<Duration> {
        match self.shared.timeout_nanos.load(Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// The header to read a request's deadline from.
    #[inline]
    pub(crate) fn read_header(&self) -> Option<&HeaderSpec> {
        self.shared.header.as_ref()
    }

    /// The header to write the time left into: none when propagation is off.
    #[inline]
    pub(crate) fn write_header(&self) -> Option<&HeaderSpec> {
        if self.shared.propagate.load(Relaxed) {
            self.shared.header.as_ref()
        } else {
            None
        }
    }

    /// Counts a call that ran out of `reason`'s deadline, which allowed it `after`.
    pub(crate) fn record_expiry(&self, reason: ExpiryReason, after: Duration) {
        let s = &self.shared;
        match reason {
            ExpiryReason::Policy => &s.expired_policy,
            ExpiryReason::Request => &s.expired_request,
        }
        .fetch_add(1, Relaxed);
        s.metrics.expired(reason).increment(1);
        tracing::debug!(
            name = %s.name,
            reason = reason.as_label(),
            timeout = ?after,
            "deadline expired"
        );
    }
}

/// What a deadline stage is doing, cheaply read ([`DeadlineHandle::snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadlineSnapshot {
    /// The policy timeout in force (`None`: only requests' own deadlines apply).
    pub timeout: Option<Duration>,
    /// Whether the deadline is written into outgoing requests' header.
    pub propagate: bool,
    /// Calls whose deadline passed since the layer was built (`expired_policy +
    /// expired_request`).
    pub expired: u64,
    /// Of those, calls whose tighter deadline was the policy's timeout.
    pub expired_policy: u64,
    /// Of those, calls whose tighter deadline was the request's own.
    pub expired_request: u64,
}
