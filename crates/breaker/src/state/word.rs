//! The state word: the [`State`] and a generation number packed in one `u64`, so a permit
//! can tell whether the breaker moved on while its call ran.

use std::fmt;

/// A breaker state.
///
/// New states may be added (`#[non_exhaustive]`): a `match` on it needs a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A few probes pass; their outcomes close or re-open the breaker.
    HalfOpen,
    /// Opened by hand ([`Breaker::force_open`](crate::Breaker::force_open)); stays open
    /// until [`Breaker::reset`](crate::Breaker::reset).
    ForcedOpen,
    /// Switched off by hand ([`Breaker::disable`](crate::Breaker::disable)): every call
    /// passes, nothing is counted.
    Disabled,
    /// Watching only, set by hand ([`Breaker::metrics_only`](crate::Breaker::metrics_only),
    /// resilience4j's `METRICS_ONLY`): every call passes and is counted, the rates and
    /// metrics move as when closed, but the circuit never opens.
    MetricsOnly,
}

impl State {
    pub(crate) const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
        State::MetricsOnly,
    ];

    /// The state's number: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled,
    /// 5 metrics only.
    /// (The `prism_breaker_state` gauge has one series per state, by [`as_label`](Self::as_label).)
    pub fn as_number(self) -> u8 {
        self as u8
    }

    /// A short label: `closed`, `open`, `half_open`, `forced_open`, `disabled`,
    /// `metrics_only`.
    pub fn as_label(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }

    #[inline]
    pub(crate) fn from_number(n: u64) -> State {
        State::ALL[(n as usize).min(State::ALL.len() - 1)]
    }

    /// Whether calls are rejected in this state (open or forced open).
    pub(crate) fn rejects(self) -> bool {
        matches!(self, State::Open | State::ForcedOpen)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_label())
    }
}

/// The state word: `generation << 8 | state number`.
#[inline]
pub(crate) fn pack_state(generation: u64, state: State) -> u64 {
    (generation << 8) | u64::from(state.as_number())
}

/// The generation and state of a state word.
#[inline]
pub(crate) fn unpack_state(word: u64) -> (u64, State) {
    (word >> 8, State::from_number(word & 0xff))
}

/// The generation after `generation` (it wraps within the 56 bits the word keeps).
pub(crate) fn next_generation(generation: u64) -> u64 {
    generation.wrapping_add(1) & (u64::MAX >> 8)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn state_numbers_and_labels() {
        for (n, s) in State::ALL.iter().enumerate() {
            assert_eq!(usize::from(s.as_number()), n);
            assert_eq!(State::from_number(n as u64), *s);
            assert_eq!(s.to_string(), s.as_label());
        }
        assert_eq!(State::from_number(99), State::MetricsOnly);
    }

    #[test]
    fn the_word_keeps_generation_and_state() {
        for s in State::ALL {
            let word = pack_state(12345, s);
            assert_eq!(unpack_state(word), (12345, s));
        }
        assert_eq!(next_generation(u64::MAX >> 8), 0);
    }
}
