//! Config reload metrics: the hot reloads of a policy file ([`Policies`] in the facade),
//! whether by a call, a watched file or SIGHUP.
//!
//! These are process-wide, not per policy: one reload applies a whole file to every
//! policy in it, so they carry only [`LABEL_RESULT`](super::LABEL_RESULT).
//!
//! [`Policies`]: https://docs.rs/tower-prism/latest/tower_prism/struct.Policies.html

use metrics::{describe_counter, describe_gauge, Unit};

/// Counter: reload attempts, by `result` ([`RESULT_SUCCESS`] or [`RESULT_ERROR`]).
pub const RELOADS_TOTAL: &str = "prism_config_reloads_total";
/// Gauge: when the running config was last loaded or reloaded successfully, in unix
/// seconds (set when the policies are built, then by each successful reload).
pub const LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: &str =
    "prism_config_last_reload_success_timestamp_seconds";

/// The `result` label of [`RELOADS_TOTAL`] for a reload that applied (or found nothing to
/// change).
pub const RESULT_SUCCESS: &str = "success";
/// The `result` label of [`RELOADS_TOTAL`] for a reload that was refused or could not read
/// or parse the file; the running config stays.
pub const RESULT_ERROR: &str = "error";

/// Every config metric name.
pub const ALL: &[&str] = &[RELOADS_TOTAL, LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS];

/// Registers the config metrics' descriptions.
pub fn describe() {
    describe_counter!(
        RELOADS_TOTAL,
        Unit::Count,
        "Config reload attempts, by result (success or error)."
    );
    describe_gauge!(
        LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time of the last successful config load or reload."
    );
}
