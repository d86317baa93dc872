//! The set of error kinds a fallback answers: a bitmask, so the call path reads it with one
//! atomic load, and the labels a config file writes the kinds with.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};
use tower_prism_core::ConfigError;

use crate::error::ErrorKind;

/// Every kind, in label order; [`index`] is a kind's place here.
pub(crate) const ALL: [ErrorKind; 8] = [
    ErrorKind::RateLimited,
    ErrorKind::ConcurrencyLimited,
    ErrorKind::CircuitOpen,
    ErrorKind::RetriesExhausted,
    ErrorKind::Timeout,
    ErrorKind::NoHealthyEndpoint,
    ErrorKind::LimiterUnavailable,
    ErrorKind::Inner,
];

/// The mask with every kind in it.
pub(crate) const EVERY: u32 = (1 << ALL.len()) - 1;

/// A kind's place in [`ALL`]. An exhaustive match, so a kind added to [`ErrorKind`] does
/// not compile until it has a place here (and a label, a counter, a bit).
pub(crate) fn index(kind: ErrorKind) -> usize {
    match kind {
        ErrorKind::RateLimited => 0,
        ErrorKind::ConcurrencyLimited => 1,
        ErrorKind::CircuitOpen => 2,
        ErrorKind::RetriesExhausted => 3,
        ErrorKind::Timeout => 4,
        ErrorKind::NoHealthyEndpoint => 5,
        ErrorKind::LimiterUnavailable => 6,
        ErrorKind::Inner => 7,
    }
}

/// The mask of `kinds`; no kind listed means every kind.
pub(crate) fn mask(kinds: &[ErrorKind]) -> u32 {
    if kinds.is_empty() {
        return EVERY;
    }
    kinds.iter().fold(0, |mask, &kind| mask | 1 << index(kind))
}

/// Whether `mask` holds `kind`: the whole decision of whether a fallback answers.
pub(crate) fn contains(mask: u32, kind: ErrorKind) -> bool {
    mask & 1 << index(kind) != 0
}

/// The kinds in `mask`, in label order.
pub(crate) fn kinds_of(mask: u32) -> Vec<ErrorKind> {
    ALL.into_iter().filter(|&k| contains(mask, k)).collect()
}

/// The kind a label names (`"circuit_open"`), as [`ErrorKind::as_str`] writes it.
pub(crate) fn parse(label: &str) -> Result<ErrorKind, ConfigError> {
    ALL.into_iter()
        .find(|kind| kind.as_str() == label)
        .ok_or_else(|| {
            ConfigError::new(
                "on",
                label,
                "not an error kind; expected rate_limited, concurrency_limited, circuit_open, \
                 retries_exhausted, timeout, no_healthy_endpoint, limiter_unavailable or inner",
            )
        })
}

/// Serde for `on`: the kinds as their labels.
pub(crate) mod labels {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(kinds: &[ErrorKind], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(kinds.iter().map(|k| k.as_str()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ErrorKind>, D::Error> {
        let labels = Vec::<String>::deserialize(d)?;
        labels
            .iter()
            .map(|label| parse(label).map_err(D::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_bit_and_its_label_round_trips() {
        let mut seen = 0;
        for (i, kind) in ALL.into_iter().enumerate() {
            assert_eq!(index(kind), i);
            assert_eq!(seen & mask(&[kind]), 0, "{kind} shares a bit");
            seen |= mask(&[kind]);
            assert_eq!(parse(kind.as_str()).unwrap(), kind);
        }
        assert_eq!(seen, EVERY);
    }

    #[test]
    fn no_kind_listed_means_every_kind() {
        assert_eq!(mask(&[]), EVERY);
        assert_eq!(kinds_of(EVERY), ALL.to_vec());
    }

    #[test]
    fn a_mask_holds_exactly_its_kinds() {
        let m = mask(&[
            ErrorKind::CircuitOpen,
            ErrorKind::Timeout,
            ErrorKind::CircuitOpen,
        ]);
        assert!(contains(m, ErrorKind::CircuitOpen));
        assert!(contains(m, ErrorKind::Timeout));
        assert!(!contains(m, ErrorKind::Inner));
        assert_eq!(kinds_of(m), [ErrorKind::CircuitOpen, ErrorKind::Timeout]);
    }

    #[test]
    fn an_unknown_label_names_the_field() {
        let err = parse("circuit_opened").unwrap_err();
        assert_eq!(err.field(), "on");
        assert_eq!(err.value(), "circuit_opened");
        assert!(
            parse("Circuit_Open").is_err(),
            "labels are exact, as metrics write them"
        );
    }
}
