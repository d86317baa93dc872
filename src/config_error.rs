//! [`ConfigFileError`]: why a config file could not be used, or a reload was refused.

use std::path::PathBuf;

use tower_prism_core::ConfigError;

use crate::parse_error::ParseError;

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
    /// [`Policies`](crate::Policies); that needs a restart (services are built from the policies at start).
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
