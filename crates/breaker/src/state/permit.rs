//! [`Permit`]: one admitted call.

use tower_prism_core::Moment;

/// Permission for one call, from [`Breaker::acquire`](crate::Breaker::acquire); hand it
/// back to [`Breaker::record`](crate::Breaker::record) (call finished) or
/// [`Breaker::release`](crate::Breaker::release) (call cancelled). Both take it by value,
/// so a permit is used once (it is neither `Clone` nor `Copy`). Always hand it back: a
/// half-open probe permit that is simply dropped keeps its slot, and the probe round cannot
/// finish without it (the [`CircuitBreaker`](crate::CircuitBreaker) service does this for
/// you, also on cancellation).
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    pub(crate) generation: u64,
    pub(crate) kind: PermitKind,
    /// When the call was admitted, on the breaker's clock: its duration is measured from here.
    pub(crate) start: Moment,
}

/// What kind of call a permit admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermitKind {
    Closed,
    Probe,
    Disabled,
}

impl Permit {
    /// Whether this permit is one of the half-open probes.
    pub fn is_probe(&self) -> bool {
        self.kind == PermitKind::Probe
    }
}
