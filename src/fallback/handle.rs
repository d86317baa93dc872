//! [`FallbackHandle`]: the state every service of one fallback layer shares, the decision
//! (answer or pass on), and what it reports.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::Counter;
use tower_prism_core::internal::lock;
use tower_prism_core::metrics::fallback::ANSWERED_TOTAL;
use tower_prism_core::metrics::{LABEL_NAME, LABEL_REASON};
use tower_prism_core::{BoxError, ConfigError};

use super::config::FallbackConfig;
use super::http_answer::{HttpParts, HttpSlot};
use super::kinds;
use crate::error::{Error, ErrorKind};

const KINDS: usize = kinds::ALL.len();

#[derive(Debug)]
struct Shared {
    name: String,
    /// The kinds answered, as a bitmask: one relaxed load per failed call.
    on: AtomicU32,
    /// The config in force; its lock also serialises reconfigurations (never taken on a
    /// call's path).
    config: Mutex<FallbackConfig>,
    /// The HTTP answer in force: read on the fallback path only, swapped by reconfigure.
    http: Arc<HttpSlot>,
    answered: [AtomicU64; KINDS],
    passed_on: AtomicU64,
    /// `prism_fallback_answered_total{name, reason}` for each kind, registered at build
    /// (every kind, since a reconfigure may add any).
    counters: [Counter; KINDS],
}

/// The fallback stage's shared state: its name, the kinds it answers, the configured
/// HTTP answer and its counts. Every service of one
/// [`FallbackLayer`](super::FallbackLayer), and every clone of the handle, is the same
/// stage; reach it with [`FallbackLayer::handle`](super::FallbackLayer::handle) or
/// [`Fallback::handle`](super::Fallback::handle).
///
/// ```
/// use tower_prism::fallback::{FallbackConfig, FallbackLayer};
/// use tower_prism::ErrorKind;
///
/// let layer = FallbackLayer::from_config(&FallbackConfig::default()).unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.snapshot().on.len(), 8); // no kind listed: every kind
///
/// let only_open = FallbackConfig::builder().on([ErrorKind::CircuitOpen]).build().unwrap();
/// handle.reconfigure(&only_open).unwrap();
/// assert_eq!(handle.snapshot().on, [ErrorKind::CircuitOpen]);
///
/// let mut bad = only_open.clone();
/// bad.status = 1000;
/// assert!(handle.reconfigure(&bad).is_err());
/// assert_eq!(handle.config(), only_open); // all or nothing
/// ```
#[derive(Debug, Clone)]
pub struct FallbackHandle {
    shared: Arc<Shared>,
}

impl FallbackHandle {
    /// A stage from a config and the HTTP answer parsed from it (the layer builder
    /// validates both).
    pub(crate) fn new(name: String, config: &FallbackConfig, http: Arc<HttpSlot>) -> Self {
        let counters = kinds::ALL.map(|kind| {
            metrics::counter!(ANSWERED_TOTAL, LABEL_NAME => name.clone(), LABEL_REASON => kind.as_str())
        });
        let shared = Shared {
            name,
            on: AtomicU32::new(kinds::mask(&config.on)),
            config: Mutex::new(config.clone()),
            http,
            answered: Default::default(),
            passed_on: AtomicU64::new(0),
            counters,
        };
        FallbackHandle {
            shared: Arc::new(shared),
        }
    }

    /// The policy name used in metrics and events.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The config in force (the last one applied).
    pub fn config(&self) -> FallbackConfig {
        lock(&self.shared.config).clone()
    }

    /// Applies a new config to running services, all or nothing: an invalid config
    /// changes nothing. The kinds answered and the HTTP answer change for every error
    /// that arrives afterwards; an answer already being given is not changed.
    pub fn reconfigure(&self, config: &FallbackConfig) -> Result<(), ConfigError> {
        let http = HttpParts::from_config(config)?;
        let s = &self.shared;
        let mut current = lock(&s.config);
        s.on.store(kinds::mask(&config.on), Ordering::Relaxed);
        s.http.store(http, config);
        *current = config.clone();
        drop(current);
        tracing::info!(name = %s.name, on = ?config.on, on_status = ?config.on_status, status = config.status, "fallback reconfigured");
        Ok(())
    }

    /// What the fallback stage has done since it was built.
    pub fn snapshot(&self) -> FallbackSnapshot {
        let s = &self.shared;
        let by_kind: Vec<(ErrorKind, u64)> = kinds::ALL
            .into_iter()
            .zip(&s.answered)
            .map(|(kind, n)| (kind, n.load(Ordering::Relaxed)))
            .collect();
        FallbackSnapshot {
            on: kinds::kinds_of(s.on.load(Ordering::Relaxed)),
            answered: by_kind.iter().map(|(_, n)| n).sum(),
            by_kind,
            passed_on: s.passed_on.load(Ordering::Relaxed),
        }
    }

    /// Decides on a failed call: `Ok` with the classified error when the fallback
    /// answers it (counted, traced), `Err` with the error as it came when not.
    ///
    /// An error passed on is the inner service's own box, not a [`crate::Error`]: a
    /// caller that downcasts to a stage's error still can, and [`Error::from_box`]
    /// classifies it the same above. Classifying and unwrapping allocate nothing.
    pub(crate) fn decide(&self, error: BoxError) -> Result<Error, BoxError> {
        let s = &self.shared;
        let error = Error::from_box(error);
        let kind = error.kind();
        if !kinds::contains(s.on.load(Ordering::Relaxed), kind) {
            s.passed_on.fetch_add(1, Ordering::Relaxed);
            return Err(error.into_inner());
        }
        let i = kinds::index(kind);
        s.answered[i].fetch_add(1, Ordering::Relaxed);
        s.counters[i].increment(1);
        // The error is about to disappear behind an answer: this event (and the counter)
        // is what keeps it visible. Debug, as a fallback is chosen for errors expected
        // under load; the counter by reason is the thing to alert on.
        tracing::debug!(name = %s.name, reason = kind.as_str(), error = %error.get_ref(), "fallback answered");
        Ok(error)
    }
}

impl FallbackHandle {
    /// Counts and traces the answer to a response handled as a failure (`error`, made by
    /// [`Answer::failure`](super::Answer::failure)): always answered, whatever `on` lists.
    pub(crate) fn answered_response(&self, error: &Error) {
        let s = &self.shared;
        let kind = error.kind();
        let i = kinds::index(kind);
        s.answered[i].fetch_add(1, Ordering::Relaxed);
        s.counters[i].increment(1);
        tracing::debug!(name = %s.name, reason = kind.as_str(), error = %error.get_ref(), "fallback answered a response");
    }
}

/// What a fallback stage has done, cheaply read ([`FallbackHandle::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackSnapshot {
    /// The kinds of error answered now (every kind when the config lists none).
    pub on: Vec<ErrorKind>,
    /// Errors answered since the layer was built.
    pub answered: u64,
    /// Errors answered, for every kind (in the order of [`ErrorKind::as_str`]'s labels
    /// listed on [`FallbackConfig::on`]), zeros included.
    pub by_kind: Vec<(ErrorKind, u64)>,
    /// Errors passed on unanswered (their kind was not in `on`).
    pub passed_on: u64,
}

impl FallbackSnapshot {
    /// Errors of `kind` answered.
    pub fn answered_for(&self, kind: ErrorKind) -> u64 {
        self.by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(on: &[ErrorKind]) -> FallbackHandle {
        let config = FallbackConfig::builder()
            .on(on.iter().copied())
            .build()
            .unwrap();
        FallbackHandle::new("t".into(), &config, HttpSlot::new())
    }

    #[test]
    fn a_listed_kind_is_answered_and_counted() {
        let h = handle(&[ErrorKind::CircuitOpen]);
        let open = tower_prism_breaker::Error::CircuitOpen {
            retry_after: std::time::Duration::from_secs(1),
        };
        let error = h.decide(Box::new(open)).unwrap();
        assert_eq!(error.kind(), ErrorKind::CircuitOpen);
        let snap = h.snapshot();
        assert_eq!(snap.answered, 1);
        assert_eq!(snap.answered_for(ErrorKind::CircuitOpen), 1);
        assert_eq!(snap.passed_on, 0);
    }

    #[test]
    fn another_kind_passes_on_as_the_same_box() {
        let h = handle(&[ErrorKind::CircuitOpen]);
        let error: BoxError = "refused".into();
        let address = &*error as *const _ as *const u8;
        let back = h.decide(error).unwrap_err();
        assert_eq!(&*back as *const _ as *const u8, address, "not re-boxed");
        assert_eq!(back.to_string(), "refused");
        let snap = h.snapshot();
        assert_eq!((snap.answered, snap.passed_on), (0, 1));
    }
}
