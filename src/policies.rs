//! [`Policies`]: every policy of a config file, running, and their hot reload.

use std::collections::BTreeMap;
use std::path::Path;

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
#[derive(Debug, Clone)]
pub struct Policies<P: Profile = Generic> {
    layers: BTreeMap<String, ReliabilityLayer<P>>,
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
        Ok(Policies { layers })
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
    /// running limiter or breaker keeps its `clock` and a running breaker its `window`
    /// ([`ConfigFileError::Invalid`] naming the field). Reloads are applied one at a time.
    pub fn reload(&self, config: &ReliabilityConfig) -> Result<(), ConfigFileError> {
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
        Ok(())
    }

    /// Parses, validates and applies a new TOML text (see [`reload`](Self::reload)).
    pub fn reload_toml(&self, text: &str) -> Result<(), ConfigFileError> {
        self.reload(&ReliabilityConfig::from_toml(text)?)
    }

    /// Reads, validates and applies a new config file (see [`reload`](Self::reload)).
    pub fn reload_file(&self, path: impl AsRef<Path>) -> Result<(), ConfigFileError> {
        self.reload(&ReliabilityConfig::from_file(path)?)
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
}
