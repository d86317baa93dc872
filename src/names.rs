//! Policy names: the checks on them and how errors quote them.

use tower_prism_core::config::{quote_bounded, MAX_QUOTED};
use tower_prism_core::ConfigError;

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

/// `policy.<name>`, the section of a policy's fields in errors; a name longer than
/// 64 characters is cut, so a huge policy name cannot make a huge error.
pub(crate) fn policy_section(name: &str) -> String {
    format!("policy.{}", bounded_name(name))
}

/// A policy name as an error quotes it (cut after 64 characters).
pub(crate) fn bounded_name(name: &str) -> String {
    quote_bounded(name, MAX_QUOTED)
}

/// The most policy names an [`ConfigFileError::UnknownPolicy`](crate::ConfigFileError::UnknownPolicy) lists.
const MAX_KNOWN_LISTED: usize = 16;

/// Names for [`ConfigFileError::UnknownPolicy`](crate::ConfigFileError::UnknownPolicy): at most [`MAX_KNOWN_LISTED`], each
/// bounded, then how many more there are.
pub(crate) fn known_names<'a>(names: impl ExactSizeIterator<Item = &'a String>) -> String {
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
