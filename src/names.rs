//! Policy names: the checks on them and how errors quote them.

use tower_prism_core::config::{quote_bounded, MAX_QUOTED};
use tower_prism_core::ConfigError;

/// The longest policy name, in bytes: a name is the `name` label of every metric and
/// appears in every log event of its stages, so it must stay short.
pub const MAX_POLICY_NAME: usize = 128;

/// Checks a policy name: 1 to [`MAX_POLICY_NAME`] bytes, no control characters, no
/// invisible ones, no white space at either end (a name goes into metric labels and log
/// lines as it is, and two names that print alike must not be two policies).
pub(crate) fn check_policy_name(name: &str) -> Result<(), ConfigError> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.len() > MAX_POLICY_NAME {
        "must be at most 128 bytes (it is the `name` label of every metric)"
    } else if name.chars().any(char::is_control) {
        "must not contain control characters"
    } else if name.chars().any(is_invisible) {
        "must not contain invisible characters (zero-width, direction marks, BOM)"
    } else if name.trim() != name {
        "must not begin or end with white space"
    } else {
        return Ok(());
    };
    Err(ConfigError::new("policy", format!("{name:?}"), reason))
}

/// Unicode's invisible formatting characters (general category Cf, and the tag block):
/// they print as nothing, so `api` and `a\u{200b}pi` would be two policies that look like one
/// in every dashboard.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
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
