//! A TOML file of named policies, each stacking the components' own configs.
//!
//! ```toml
//! [policy.payments.rate_limit]
//! rate = 100
//! period = "1s"
//!
//! [policy.payments.circuit_breaker]
//! failure_rate_threshold = 0.5
//! wait_duration = "10s"
//!
//! [policy.payments.retry]
//! max_attempts = 3
//!
//! [policy.payments.balance]
//! strategy = "p2c_peak_ewma"
//! ```
//!
//! Every table is optional; a policy without a table has no such stage.
//!
//! Hot reload ([`Policies::reload`]) keeps the shape of what runs: the same policies, each
//! with the same stage tables. Within that, every value can change, except a running
//! limiter's or breaker's `clock` and a running breaker's `window`. A reload that breaks a
//! rule, or has any invalid value, is refused with an error naming it and changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tower_prism_core::config::{quote_bounded, MAX_QUOTED};
use tower_prism_core::ConfigError;

use crate::components::{
    BalanceConfig, BreakerConfig, BreakerConfigBuilder, ConcurrencyConfig, RateLimitConfig,
    RetryConfig,
};
use crate::profile::{Generic, Profile};

/// The whole config file: named policies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReliabilityConfig {
    /// The policies, by name (`[policy.<name>]`).
    #[serde(default)]
    pub policy: BTreeMap<String, PolicyConfig>,
}

/// One named policy: which stages it has and how each is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawPolicyConfig")]
pub struct PolicyConfig {
    /// The rate limiter (`[policy.<name>.rate_limit]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// The adaptive concurrency limit (`[policy.<name>.concurrency_limit]`), right below
    /// the rate limiter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<ConcurrencyConfig>,
    /// The circuit breaker (`[policy.<name>.circuit_breaker]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerConfig>,
    /// Retries (`[policy.<name>.retry]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// The load balancer (`[policy.<name>.balance]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<BalanceConfig>,
}

/// A policy as written, before its breaker table is checked: the breaker's config type is
/// valid by construction, so it is read here in its unchecked (builder) form and checked
/// after parsing, like every other stage, and its errors name the field the same way.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyConfig {
    #[serde(default)]
    rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    concurrency_limit: Option<ConcurrencyConfig>,
    #[serde(default)]
    circuit_breaker: Option<BreakerConfigBuilder>,
    #[serde(default)]
    retry: Option<RetryConfig>,
    #[serde(default)]
    balance: Option<BalanceConfig>,
}

/// The file as written (see [`RawPolicyConfig`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    policy: BTreeMap<String, RawPolicyConfig>,
}

impl TryFrom<RawPolicyConfig> for PolicyConfig {
    type Error = ConfigError;

    fn try_from(raw: RawPolicyConfig) -> Result<Self, ConfigError> {
        let circuit_breaker = raw
            .circuit_breaker
            .map(BreakerConfigBuilder::build)
            .transpose()
            .map_err(|e| e.in_section("circuit_breaker"))?;
        Ok(PolicyConfig {
            rate_limit: raw.rate_limit,
            concurrency_limit: raw.concurrency_limit,
            circuit_breaker,
            retry: raw.retry,
            balance: raw.balance,
        })
    }
}

impl PolicyConfig {
    /// Checks every stage's values; the error names the stage and field
    /// (`circuit_breaker.failure_rate_threshold`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(c) = &self.rate_limit {
            c.validate().map_err(|e| e.in_section("rate_limit"))?;
        }
        if let Some(c) = &self.concurrency_limit {
            c.validate()
                .map_err(|e| e.in_section("concurrency_limit"))?;
        }
        if let Some(c) = &self.circuit_breaker {
            crate::components::validate_breaker(c).map_err(|e| e.in_section("circuit_breaker"))?;
        }
        if let Some(c) = &self.retry {
            crate::components::validate_retry(c).map_err(|e| e.in_section("retry"))?;
        }
        if let Some(c) = &self.balance {
            c.validate().map_err(|e| e.in_section("balance"))?;
        }
        Ok(())
    }
}

/// The most characters of toml's own message a [`ParseError`] keeps (it may quote a
/// value, e.g. a string given where a number belongs).
pub const MAX_PARSE_MESSAGE: usize = 256;

/// A TOML syntax or type error, or an unknown key, told within bounds: toml's message (at
/// most [`MAX_PARSE_MESSAGE`] characters), the line and column, and a window of at most
/// [`MAX_QUOTED`] characters of that line around the column. However large the input, the
/// error stays small (toml's own error keeps and prints the whole source line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    message: String,
    line: Option<usize>,
    column: Option<usize>,
    excerpt: Option<String>,
}

impl ParseError {
    /// Bounds toml's error `error` about `text`.
    fn new(text: &str, error: &toml::de::Error) -> Self {
        let message = quote_bounded(error.message().trim(), MAX_PARSE_MESSAGE);
        let Some(span) = error.span() else {
            return ParseError {
                message,
                line: None,
                column: None,
                excerpt: None,
            };
        };
        let at = floor_char_boundary(text, span.start.min(text.len()));
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let line = text[..line_start].matches('\n').count() + 1;
        let column = text[line_start..at].chars().count() + 1;
        ParseError {
            message,
            line: Some(line),
            column: Some(column),
            excerpt: Some(excerpt(&text[line_start..line_end], column - 1)),
        }
    }

    /// toml's message (bounded).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The line of the error (1-based), when toml knows where it is.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The column of the error in characters (1-based), when toml knows where it is.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// At most [`MAX_QUOTED`] characters of the line, around the column (`...` marks a cut).
    pub fn excerpt(&self) -> Option<&str> {
        self.excerpt.as_deref()
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " (line {line}, column {column})")?;
        }
        if let Some(excerpt) = &self.excerpt {
            write!(f, ": {excerpt}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// `policy.<name>`, the section of a policy's fields in errors; a name longer than
/// [`MAX_QUOTED`] is cut, so a huge policy name cannot make a huge error.
/// The longest policy name, in bytes: a name is the `name` label of every metric and
/// appears in every log event of its stages, so it must stay short.
pub const MAX_POLICY_NAME: usize = 128;

/// Checks a policy name: 1 to [`MAX_POLICY_NAME`] bytes, no control characters (a name
/// goes into metric labels and log lines as it is).
pub(crate) fn check_policy_name(name: &str) -> Result<(), ConfigError> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.len() > MAX_POLICY_NAME {
        "must be at most 128 bytes (it is the `name` label of every metric)"
    } else if name.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(ConfigError::new("policy", format!("{name:?}"), reason))
}

pub(crate) fn policy_section(name: &str) -> String {
    format!("policy.{}", bounded_name(name))
}

/// A policy name as an error quotes it (cut after [`MAX_QUOTED`] characters).
pub(crate) fn bounded_name(name: &str) -> String {
    quote_bounded(name, MAX_QUOTED)
}

/// The most policy names an [`ConfigFileError::UnknownPolicy`] lists.
const MAX_KNOWN_LISTED: usize = 16;

/// Names for [`ConfigFileError::UnknownPolicy`]: at most [`MAX_KNOWN_LISTED`], each
/// bounded, then how many more there are.
fn known_names<'a>(names: impl ExactSizeIterator<Item = &'a String>) -> String {
    let total = names.len();
    let mut listed: Vec<String> = names
        .take(MAX_KNOWN_LISTED)
        .map(|n| bounded_name(n))
        .collect();
    if total > MAX_KNOWN_LISTED {
        listed.push(format!("and {} more", total - MAX_KNOWN_LISTED));
    }
    listed.join(", ")
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// At most [`MAX_QUOTED`] characters of `line`, starting a little before character
/// `column`, with `...` where it was cut.
fn excerpt(line: &str, column: usize) -> String {
    let from = column.saturating_sub(MAX_QUOTED / 4);
    let mut chars = line.char_indices().skip(from);
    let Some((start, _)) = chars.next() else {
        return line.trim_end().to_owned();
    };
    let end = chars.nth(MAX_QUOTED.saturating_sub(1)).map(|(i, _)| i);
    let mut out = String::new();
    if start > 0 {
        out.push_str("...");
    }
    out.push_str(line[start..end.unwrap_or(line.len())].trim_end());
    if end.is_some() {
        out.push_str("...");
    }
    out
}

/// Why a config file could not be used, or a reload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML, has an unknown key or a value of the wrong type.
    /// The message gives the line, column and a bounded excerpt.
    #[error("invalid config: {0}")]
    Parse(#[source] ParseError),
    /// A value is out of range; the field is `policy.<name>.<stage>.<field>`.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// No policy of that name in the file.
    #[error("no policy named {name:?} in the config (known: {known})")]
    UnknownPolicy {
        /// The name asked for (its first 64 characters, as every name an error quotes).
        name: String,
        /// The names the file has, comma-separated (at most 16, then how many more).
        known: String,
    },
    /// A hot reload tried to change which stages a running policy has; that needs a
    /// restart (the layers' types are fixed when they are built).
    #[error("policy {policy:?}: cannot {change} the `{stage}` stage of a running layer; restart to change the stack's shape")]
    ShapeChanged {
        /// The policy.
        policy: String,
        /// The stage added or removed.
        stage: &'static str,
        /// `add` or `remove`.
        change: &'static str,
    },
    /// A hot reload tried to add a policy to, or remove one from, the running
    /// [`Policies`]; that needs a restart (services are built from the policies at start).
    #[error("policy {policy:?}: a reload cannot {change} a policy; restart to change the set of policies")]
    PoliciesChanged {
        /// The policy added or removed.
        policy: String,
        /// `add` or `remove`.
        change: &'static str,
    },
}

impl ConfigFileError {
    /// The dotted path of the bad field, when a value was out of range.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigFileError::Invalid(e) => Some(e.field()),
            _ => None,
        }
    }
}

impl ReliabilityConfig {
    /// Parses and validates a TOML text.
    ///
    /// ```
    /// use tower_prism::ReliabilityConfig;
    ///
    /// let config = ReliabilityConfig::from_toml(r#"
    ///     [policy.payments.rate_limit]
    ///     rate = 100
    /// "#).unwrap();
    /// assert!(config.policy["payments"].rate_limit.is_some());
    ///
    /// let err = ReliabilityConfig::from_toml(r#"
    ///     [policy.payments.rate_limit]
    ///     rate = 0
    /// "#).unwrap_err();
    /// assert_eq!(err.field(), Some("policy.payments.rate_limit.rate"));
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, ConfigFileError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigFileError::Parse(ParseError::new(text, &e)))?;
        let policy = raw
            .policy
            .into_iter()
            .map(|(name, raw)| {
                check_policy_name(&name)?;
                let policy = PolicyConfig::try_from(raw)
                    .map_err(|e| e.in_section(&policy_section(&name)))?;
                Ok((name, policy))
            })
            .collect::<Result<_, ConfigError>>()?;
        let config = ReliabilityConfig { policy };
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Checks every policy; the error's field is `policy.<name>.<stage>.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, policy) in &self.policy {
            check_policy_name(name)?;
            policy
                .validate()
                .map_err(|e| e.in_section(&policy_section(name)))?;
        }
        Ok(())
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Result<&PolicyConfig, ConfigFileError> {
        self.policy
            .get(name)
            .ok_or_else(|| ConfigFileError::UnknownPolicy {
                name: bounded_name(name),
                known: known_names(self.policy.keys()),
            })
    }
}

/// Every policy of a config file as a running [`ReliabilityLayer`](crate::ReliabilityLayer), and the hot-reload
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
    layers: BTreeMap<String, crate::ReliabilityLayer<P>>,
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
                    crate::ReliabilityLayer::from_policy_as(name, policy, profile.clone())?,
                ))
            })
            .collect::<Result<_, ConfigFileError>>()?;
        Ok(Policies { layers })
    }

    /// The layer of policy `name` (clones share its state and its reloads).
    pub fn get(&self, name: &str) -> Result<crate::ReliabilityLayer<P>, ConfigFileError> {
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
        let _guards: Vec<_> = self.layers.values().map(|l| l.reload_lock()).collect();
        for (name, layer) in &self.layers {
            layer.check(&config.policy[name])?;
        }
        for (name, layer) in &self.layers {
            layer.apply(&config.policy[name]);
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
    fn unknown_keys_and_bad_values_name_where() {
        let err = ReliabilityConfig::from_toml("[policy.p.rate_limt]\nrate = 1").unwrap_err();
        assert!(matches!(err, ConfigFileError::Parse(_)));
        assert!(err.to_string().contains("rate_limt"), "{err}");
        let err =
            ReliabilityConfig::from_toml("[policy.p.balance]\nstrategy = \"random\"").unwrap_err();
        assert!(err.to_string().contains("random"), "{err}");
        let err =
            ReliabilityConfig::from_toml("[policy.p.balance.outlier]\nmax_ejection_percent = 150")
                .unwrap_err();
        assert_eq!(
            err.field(),
            Some("policy.p.balance.outlier.max_ejection_percent")
        );
        assert!(err.to_string().contains("150"), "{err}");
    }

    #[test]
    fn unknown_policy_lists_the_known_ones() {
        let config = ReliabilityConfig::from_toml(TWO).unwrap();
        let err = crate::ReliabilityLayer::from_config(&config, "billing").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no policy named \"billing\" in the config (known: payments, search)"
        );
    }

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
    fn parse_errors_give_line_column_and_a_bounded_excerpt() {
        let text = "[policy.p.rate_limit]\nrate = 10\nburst = \"é\" # not a number\n";
        let ConfigFileError::Parse(err) = ReliabilityConfig::from_toml(text).unwrap_err() else {
            panic!("a parse error");
        };
        assert_eq!((err.line(), err.column()), (Some(3), Some(9)));
        assert_eq!(err.excerpt(), Some("burst = \"é\" # not a number"));
        assert!(err.to_string().contains("(line 3, column 9)"), "{err}");
        // a long line is cut around the column, on character boundaries
        let line = format!("{}{}", "é".repeat(200), "x".repeat(200));
        let cut = excerpt(&line, 200);
        assert!(cut.starts_with("...é") && cut.ends_with("x..."), "{cut}");
        assert_eq!(cut.chars().count(), MAX_QUOTED + 6, "{cut}");
        assert_eq!(excerpt("short", 2), "short");
        assert_eq!(excerpt("", 0), "");
    }

    #[test]
    fn files_are_read_and_missing_files_named() {
        let path = std::env::temp_dir().join(format!("prism-config-{}.toml", std::process::id()));
        std::fs::write(&path, TWO).unwrap();
        let config = ReliabilityConfig::from_file(&path).unwrap();
        assert_eq!(config.policy.len(), 2);
        std::fs::remove_file(&path).unwrap();
        let err = ReliabilityConfig::from_file(&path).unwrap_err();
        assert!(err.to_string().contains("prism-config-"), "{err}");
    }
}
