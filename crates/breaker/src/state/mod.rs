//! The breaker's state machine, one role per file: the state word ([`word`]), the half-open
//! probe word ([`probe`]), the tunables ([`params`]), the metric handles ([`metrics`]), the
//! transitions ([`machine`]), and the plain data it hands out ([`Permit`],
//! [`BreakerSnapshot`]). No tower types; [`crate::Breaker`] is the public handle over it.

mod listeners;
mod machine;
mod metrics;
mod params;
mod permit;
mod probe;
mod snapshot;
mod word;

#[cfg(all(loom, test))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub(crate) use listeners::Listeners;
pub use listeners::StateChange;
pub(crate) use machine::Machine;
pub use permit::Permit;
pub use snapshot::BreakerSnapshot;
pub use word::State;
