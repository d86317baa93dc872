//! [`Policies`]: every policy of a config file, running, and their hot reload.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{counter, gauge, Counter, Gauge};
use tower_prism_core::metrics::{config as m, LABEL_RESULT};

use crate::config::ReliabilityConfig;
use crate::config_error::ConfigFileError;
use crate::layer::ReliabilityLayer;
use crate::names::{bounded_name, known_names};
use crate::profile::{Generic, Profile};

/// Every policy of a config file as a running [`ReliabilityLayer`], and the hot-reload
/// handle for them: [`reload`](Policies::reload) applies a new file to the running layers.
///
/// ```
/// use tower_prism::{Policies, ReliabilityConfig};
///
/// let config = ReliabilityConfig::from_toml("[policy.api.rate_limit]\nrate = 10").unwrap();
/// let policies = Policies::new(&config).unwrap();
/// let api = policies.get("api").unwrap(); // stack services with it
///
/// // A bad new config is refused and the running one stays.
/// assert!(policies.reload_toml("[policy.api.rate_limit]\nrate = 0").is_err());
/// policies.reload_toml("[policy.api.rate_limit]\nrate = 50").unwrap();
/// assert_eq!(api.snapshot().rate_limit.unwrap().rate_per_second, 50.0);
/// ```
///
/// Every reload attempt leaves a tracing event (`info` when it applied, `warn` with the
/// reason when it was refused) and counts in the metric
/// [`prism_config_reloads_total{result}`](tower_prism_core::metrics::config::RELOADS_TOTAL);
/// the gauge
/// [`prism_config_last_reload_success_timestamp_seconds`](tower_prism_core::metrics::config::LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS)
/// holds the unix time of the last good load (set when the policies are built). With the
/// `watch` feature, `Policies::watch` reloads the file whenever it changes.
#[derive(Debug, Clone)]
pub struct Policies<P: Profile = Generic> {
    layers: BTreeMap<String, ReliabilityLayer<P>>,
    reloads: Arc<ReloadMetrics>,
    /// The config last applied as a whole (built from, or reloaded): a watcher starting
    /// on a file that says otherwise applies the file.
    applied: Arc<Mutex<ReliabilityConfig>>,
}

/// What started a reload, for the tracing event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    /// `reload`, `reload_toml` or `reload_file`.
    Call,
    /// The watched file changed.
    #[cfg_attr(not(feature = "watch"), allow(dead_code))]
    FileChanged,
    /// The process received SIGHUP.
    #[cfg_attr(not(feature = "watch"), allow(dead_code))]
    Sighup,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Call => "call",
            Trigger::FileChanged => "file_changed",
            Trigger::Sighup => "sighup",
        }
    }
}

/// The reload metrics' handles, registered once when the policies are built.
struct ReloadMetrics {
    success: Counter,
    error: Counter,
    last_success: Gauge,
}

impl ReloadMetrics {
    fn register() -> ReloadMetrics {
        let metrics = ReloadMetrics {
            success: counter!(m::RELOADS_TOTAL, LABEL_RESULT => m::RESULT_SUCCESS),
            error: counter!(m::RELOADS_TOTAL, LABEL_RESULT => m::RESULT_ERROR),
            last_success: gauge!(m::LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS),
        };
        // The policies were just built from a good config: that is the last good load.
        metrics.last_success.set(unix_now());
        metrics
    }
}

impl fmt::Debug for ReloadMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadMetrics").finish_non_exhaustive()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Policies {
    /// Builds one layer per policy, with the [`Generic`] profile.
    pub fn new(config: &ReliabilityConfig) -> Result<Policies, ConfigFileError> {
        Policies::with_profile(config, Generic)
    }
}

impl<P: Profile> Policies<P> {
    /// Builds one layer per policy, each with `profile` (e.g. [`Http`](crate::Http)).
    pub fn with_profile(
        config: &ReliabilityConfig,
        profile: P,
    ) -> Result<Policies<P>, ConfigFileError> {
        let layers = config
            .policy
            .iter()
            .map(|(name, policy)| {
                Ok((
                    name.clone(),
                    ReliabilityLayer::from_policy_as(name, policy, profile.clone())?,
                ))
            })
            .collect::<Result<_, ConfigFileError>>()?;
        Ok(Policies {
            layers,
            reloads: Arc::new(ReloadMetrics::register()),
            applied: Arc::new(Mutex::new(config.clone())),
        })
    }

    /// The layer of policy `name` (clones share its state and its reloads).
    pub fn get(&self, name: &str) -> Result<ReliabilityLayer<P>, ConfigFileError> {
        self.layers
            .get(name)
            .cloned()
            .ok_or_else(|| ConfigFileError::UnknownPolicy {
                name: bounded_name(name),
                known: known_names(self.layers.keys()),
            })
    }

    /// The names of the running policies.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.layers.keys().map(String::as_str)
    }

    /// Applies a new config to every running layer, without dropping requests in flight.
    ///
    /// All or nothing: every value of every stage of every policy is checked, and so are
    /// the reload rules, before anything changes; on any error nothing has changed. The
    /// rules: the file has the same policies as the running ones (a policy added or removed
    /// is [`ConfigFileError::PoliciesChanged`]), each with the same stage tables (a table
    /// added or removed, `balance` included, is [`ConfigFileError::ShapeChanged`]); a
    /// running limiter or breaker keeps its `clock`, a running breaker its `window` and a
    /// running retry stage its `budget.window` ([`ConfigFileError::Invalid`] naming the
    /// field). Reloads are applied one at a time.
    ///
    /// The config is applied even when it equals the running one (a layer may have been
    /// reconfigured by hand since); only a watched file (`Policies::watch`) skips a text
    /// that has not changed.
    pub fn reload(&self, config: &ReliabilityConfig) -> Result<(), ConfigFileError> {
        self.reload_observed(None, Trigger::Call, || Ok(config))
    }

    /// Parses, validates and applies a new TOML text (see [`reload`](Self::reload)).
    pub fn reload_toml(&self, text: &str) -> Result<(), ConfigFileError> {
        self.reload_observed(None, Trigger::Call, || ReliabilityConfig::from_toml(text))
    }

    /// Reads, validates and applies a new config file (see [`reload`](Self::reload)).
    pub fn reload_file(&self, path: impl AsRef<Path>) -> Result<(), ConfigFileError> {
        let path = path.as_ref();
        self.reload_observed(Some(path), Trigger::Call, || {
            ReliabilityConfig::from_file(path)
        })
    }

    /// Loads a config and applies it, and leaves the attempt's tracing event and metrics
    /// whatever the outcome: every way of reloading goes through here.
    pub(crate) fn reload_observed<C: std::borrow::Borrow<ReliabilityConfig>>(
        &self,
        path: Option<&Path>,
        trigger: Trigger,
        load: impl FnOnce() -> Result<C, ConfigFileError>,
    ) -> Result<(), ConfigFileError> {
        let result = load().and_then(|config| self.apply_all(config.borrow()));
        let trigger = trigger.as_str();
        match &result {
            Ok(()) => {
                self.reloads.success.increment(1);
                self.reloads.last_success.set(unix_now());
                tracing::info!(path = ?path, trigger, "config reloaded");
            }
            Err(error) => {
                self.reloads.error.increment(1);
                tracing::warn!(
                    path = ?path,
                    trigger,
                    %error,
                    "config reload refused; the running config stays"
                );
            }
        }
        result
    }

    /// Checks `config` against every running layer, then applies it (see
    /// [`reload`](Self::reload)).
    fn apply_all(&self, config: &ReliabilityConfig) -> Result<(), ConfigFileError> {
        config.validate()?;
        if let Some(added) = config.policy.keys().find(|n| !self.layers.contains_key(*n)) {
            return Err(ConfigFileError::PoliciesChanged {
                policy: bounded_name(added),
                change: "add",
            });
        }
        if let Some(removed) = self.layers.keys().find(|n| !config.policy.contains_key(*n)) {
            return Err(ConfigFileError::PoliciesChanged {
                policy: bounded_name(removed),
                change: "remove",
            });
        }
        // One reload at a time per layer (in name order, so two reloads never wait on each
        // other crosswise): a check is only good until another reload applies.
        let _guards: Vec<_> = self
            .layers
            .values()
            .map(|l| l.stages().reload_lock())
            .collect();
        for (name, layer) in &self.layers {
            layer.stages().check(&config.policy[name])?;
        }
        for (name, layer) in &self.layers {
            layer.stages().apply(&config.policy[name]);
        }
        *tower_prism_core::internal::lock(&self.applied) = config.clone();
        Ok(())
    }

    /// Whether `config` is the one last applied as a whole.
    #[cfg_attr(not(feature = "watch"), allow(dead_code))]
    pub(crate) fn is_applied(&self, config: &ReliabilityConfig) -> bool {
        *tower_prism_core::internal::lock(&self.applied) == *config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
        [policy.payments.rate_limit]
        rate = 10

        [policy.search.rate_limit]
        rate = 100
        [policy.search.balance]
        strategy = "round_robin"
    "#;

    #[test]
    fn reload_is_all_or_nothing() {
        let config = ReliabilityConfig::from_toml(TWO).unwrap();
        let policies = Policies::new(&config).unwrap();
        let rate = |name: &str| {
            let layer = policies.get(name).unwrap();
            layer.snapshot().rate_limit.unwrap().rate_per_second
        };
        // search loses its limiter: refused, and payments (valid) is not applied either.
        let err = policies
            .reload_toml("[policy.payments.rate_limit]\nrate = 20\n[policy.search.balance]")
            .unwrap_err();
        assert!(
            matches!(err, ConfigFileError::ShapeChanged { ref policy, stage: "rate_limit", change: "remove" } if policy == "search"),
            "{err}"
        );
        assert_eq!(rate("payments"), 10.0);
        // A running policy missing from the new file: refused, naming it.
        let err = policies
            .reload_toml("[policy.payments.rate_limit]\nrate = 20")
            .unwrap_err();
        assert!(
            matches!(err, ConfigFileError::PoliciesChanged { ref policy, change: "remove" } if policy == "search"),
            "{err}"
        );
        assert_eq!(rate("payments"), 10.0);
        // A good one applies to both.
        policies
            .reload_toml(
                &TWO.replace("rate = 10", "rate = 20")
                    .replace("rate = 100", "rate = 200"),
            )
            .unwrap();
        assert_eq!((rate("payments"), rate("search")), (20.0, 200.0));
    }

    #[test]
    fn every_reload_attempt_is_counted_and_a_good_one_stamps_the_time() {
        use tower_prism_testkit::metrics::Capture;

        const SUCCESS: &str = "prism_config_reloads_total{result=success}";
        const ERROR: &str = "prism_config_reloads_total{result=error}";
        const LAST: &str = "prism_config_last_reload_success_timestamp_seconds{}";
        let capture = Capture::default();
        let policies = metrics::with_local_recorder(&capture, || {
            Policies::new(&ReliabilityConfig::from_toml(TWO).unwrap()).unwrap()
        });
        let built = capture.gauge(LAST);
        assert!(built > 1.0e9, "unix seconds at build: {built}");
        assert_eq!((capture.counter(SUCCESS), capture.counter(ERROR)), (0, 0));

        // Refused for each reason a reload can fail: a value, the text, the file, the rules.
        assert!(policies
            .reload_toml(&TWO.replace("rate = 10", "rate = 0"))
            .is_err());
        assert!(policies.reload_toml("[policy").is_err());
        assert!(policies.reload_file("/no/such/prism/file.toml").is_err());
        assert!(policies
            .reload_toml("[policy.payments.rate_limit]\nrate = 1")
            .is_err());
        assert_eq!((capture.counter(SUCCESS), capture.counter(ERROR)), (0, 4));
        assert_eq!(capture.gauge(LAST), built);

        // A good one, even the same config again (it is applied: see `reload`).
        let config = ReliabilityConfig::from_toml(TWO).unwrap();
        policies.reload(&config).unwrap();
        policies.reload(&config).unwrap();
        assert_eq!((capture.counter(SUCCESS), capture.counter(ERROR)), (2, 4));
        assert!(capture.gauge(LAST) >= built);
    }
}
