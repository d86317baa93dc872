//! Config validation errors and the bounds every component's values keep to.
//!
//! The checks and serde helpers the component crates share are public for them only and
//! hidden from the docs: they are not part of the API.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// A config value that cannot be used. It names the field (a dotted path such as
/// `policy.payments.circuit_breaker.failure_rate_threshold`), the bad value and why.
///
/// ```
/// use tower_prism_core::ConfigError;
///
/// let err = ConfigError::new("failure_rate_threshold", 1.5, "must be greater than 0 and at most 1");
/// assert_eq!(err.field(), "failure_rate_threshold");
/// assert_eq!(
///     err.to_string(),
///     "invalid `failure_rate_threshold` = 1.5: must be greater than 0 and at most 1"
/// );
/// let err = err.in_section("circuit_breaker").in_section("policy.payments");
/// assert_eq!(err.field(), "policy.payments.circuit_breaker.failure_rate_threshold");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}` = {value}: {reason}")]
pub struct ConfigError {
    field: Cow<'static, str>,
    value: String,
    reason: Cow<'static, str>,
}

impl ConfigError {
    /// An error for `field`, whose `value` is wrong for `reason`.
    pub fn new(
        field: impl Into<Cow<'static, str>>,
        value: impl fmt::Display,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        ConfigError {
            field: field.into(),
            value: quote_bounded(&value.to_string(), MAX_QUOTED),
            reason: reason.into(),
        }
    }

    /// Prefixes the field with the section it sits in (`section.field`).
    pub fn in_section(mut self, section: &str) -> Self {
        self.field = Cow::Owned(format!("{section}.{}", self.field));
        self
    }

    /// The dotted path of the bad field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The bad value, as given.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Why the value is wrong.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[doc(hidden)]
/// The most characters of a bad value an error quotes; longer values are cut to a prefix
/// and their length, so a 10 MB config value cannot make a 10 MB error or log line.
pub const MAX_QUOTED: usize = 64;

/// The longest duration any setting accepts (366 days): a rate period of a year is a real
/// quota, anything longer is a typo. Components document tighter bounds per field.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// The largest size or count any setting accepts (2^24 = 16,777,216): queue sizes, window
/// sizes, key caps. Components document tighter bounds per field.
pub const MAX_SIZE: u64 = 1 << 24;

#[doc(hidden)]
/// `text` whole when it has at most `max` characters, otherwise its first `max` characters,
/// an ellipsis and its length in bytes: what an error or log line may quote of user input.
///
/// ```
/// use tower_prism_core::config::quote_bounded;
///
/// assert_eq!(quote_bounded("250ms", 64), "250ms");
/// assert_eq!(quote_bounded(&"x".repeat(1000), 4), "xxxx... (1000 bytes)");
/// ```
pub fn quote_bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
    }
}

#[doc(hidden)]
/// Checks a duration against an upper bound (use [`MAX_DURATION`] where the field has no
/// tighter one of its own).
pub fn check_duration_at_most(
    field: &'static str,
    value: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    if value <= max {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            humantime::format_duration(value),
            format!("must be at most {}", humantime::format_duration(max)),
        ))
    }
}

#[doc(hidden)]
/// Checks a size or count against an upper bound (use [`MAX_SIZE`] where the field has no
/// tighter one of its own).
pub fn check_size_at_most<T>(field: &'static str, value: T, max: u64) -> Result<T, ConfigError>
where
    T: Copy + TryInto<u64> + fmt::Display,
{
    match value.try_into() {
        Ok(v) if v <= max => Ok(value),
        _ => Err(ConfigError::new(
            field,
            value,
            format!("must be at most {max}"),
        )),
    }
}

#[doc(hidden)]
/// Checks a rate or threshold in `(0, 1]`.
pub fn check_ratio(field: &'static str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            value,
            "must be greater than 0 and at most 1",
        ))
    }
}

#[doc(hidden)]
/// Checks a count that must be at least 1.
pub fn check_nonzero<T>(field: &'static str, value: T) -> Result<T, ConfigError>
where
    T: Copy + PartialEq + Default + fmt::Display,
{
    if value == T::default() {
        Err(ConfigError::new(field, value, "must be at least 1"))
    } else {
        Ok(value)
    }
}

#[doc(hidden)]
/// Checks a duration that must be longer than zero.
pub fn check_duration(field: &'static str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(
            field,
            humantime::format_duration(value),
            "must be longer than zero",
        ))
    } else {
        Ok(value)
    }
}

#[doc(hidden)]
/// Checks a finite number greater than zero (a rate, a multiplier).
pub fn check_positive(field: &'static str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            value,
            "must be a number greater than 0",
        ))
    }
}

#[doc(hidden)]
/// Serde support for durations written as humantime strings (`"250ms"`, `"1m 30s"`).
///
/// Use it as `#[serde(with = "tower_prism_core::config::duration")]`.
pub mod duration {
    use std::time::Duration;

    use serde::{de, Deserialize, Deserializer, Serializer};

    /// Writes a duration as a humantime string.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }

    /// Reads a humantime string such as `"250ms"` or `"2s"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|e| {
            let text = super::quote_bounded(&text, super::MAX_QUOTED);
            de::Error::custom(format!(
                "invalid duration {text:?}: {e} (write e.g. \"250ms\", \"2s\", \"1m 30s\")"
            ))
        })
    }
}

#[doc(hidden)]
/// Serde support for optional humantime durations; use with `#[serde(default, with = ...)]`.
pub mod option_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some(d)` as a humantime string and `None` as none.
    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::duration::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Reads an optional humantime string.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::duration")] Duration);
        Ok(Option::<Wrap>::deserialize(deserializer)?.map(|Wrap(d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Sample {
        #[serde(with = "duration")]
        wait: Duration,
        #[serde(
            default,
            with = "option_duration",
            skip_serializing_if = "Option::is_none"
        )]
        timeout: Option<Duration>,
    }

    #[test]
    fn durations_round_trip_as_text() {
        let s: Sample = toml::from_str("wait = \"1m 30s\"\ntimeout = \"250ms\"").unwrap();
        assert_eq!(s.wait, Duration::from_secs(90));
        assert_eq!(s.timeout, Some(Duration::from_millis(250)));
        let text = toml::to_string(&s).unwrap();
        assert_eq!(toml::from_str::<Sample>(&text).unwrap(), s);
        let s: Sample = toml::from_str("wait = \"2s\"").unwrap();
        assert_eq!(s.timeout, None);
    }

    #[test]
    fn bad_duration_is_an_error_naming_the_text() {
        let err = toml::from_str::<Sample>("wait = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("\"soon\""), "{err}");
        let err = serde_json::from_str::<Sample>("{\"wait\": 5}").unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
    }

    #[test]
    fn checks() {
        assert!(check_ratio("r", 0.5).is_ok());
        assert!(check_ratio("r", 1.0).is_ok());
        for bad in [0.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
            assert!(check_ratio("r", bad).is_err(), "{bad}");
        }
        assert_eq!(check_nonzero("n", 3u32), Ok(3));
        let err = check_nonzero("n", 0usize).unwrap_err();
        assert_eq!(
            (err.field(), err.value(), err.reason()),
            ("n", "0", "must be at least 1")
        );
        assert!(check_duration("d", Duration::ZERO).is_err());
        assert!(check_duration("d", Duration::from_millis(1)).is_ok());
        assert!(check_positive("p", 0.0).is_err());
        assert!(check_positive("p", f64::NAN).is_err());
        assert_eq!(check_positive("p", 2.5), Ok(2.5));
        let day = Duration::from_secs(86_400);
        assert!(check_duration_at_most("d", day, day).is_ok());
        let err = check_duration_at_most("d", day * 2, day).unwrap_err();
        assert_eq!(err.reason(), "must be at most 1day");
        assert_eq!(check_size_at_most("n", 5usize, 5), Ok(5));
        let err = check_size_at_most("n", u64::MAX, MAX_SIZE).unwrap_err();
        assert_eq!(err.value(), "18446744073709551615");
    }

    #[test]
    fn errors_quote_a_bounded_prefix_of_huge_values() {
        let huge = "9".repeat(5_000_000);
        let err = ConfigError::new("rate", &huge, "must be a number");
        assert!(
            err.to_string().len() < 200,
            "{} bytes",
            err.to_string().len()
        );
        assert!(err.value().ends_with("(5000000 bytes)"), "{}", err.value());
        let text = format!("wait = \"{}\"", "5".repeat(5_000_000));
        // (toml's Display also prints the source line: the facade bounds that)
        let err = toml::from_str::<Sample>(&text).unwrap_err();
        assert!(err.message().len() < 1_000, "{} bytes", err.message().len());
        // a multi-byte character is never cut in half
        assert_eq!(quote_bounded("ééé", 2), "éé... (6 bytes)");
    }
}
