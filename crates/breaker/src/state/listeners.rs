//! Callbacks told of every state change (resilience4j's `onStateTransition`, Polly's
//! `OnOpened` / `OnClosed` / `OnHalfOpened`).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use tower_prism_core::internal::lock;

use super::State;

/// A change of a breaker's state, as told to the callbacks of
/// [`Breaker::on_state_change`](crate::Breaker::on_state_change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
}

type Listener = Arc<dyn Fn(StateChange) + Send + Sync>;

/// The callbacks of one breaker. Read only on a state change (never on a call).
#[derive(Default)]
pub(crate) struct Listeners(Mutex<Vec<Listener>>);

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Listeners")
            .field(&lock(&self.0).len())
            .finish()
    }
}

impl Listeners {
    pub(crate) fn add(&self, listener: Listener) {
        lock(&self.0).push(listener);
    }

    /// Tells every callback of `change`, outside the breaker's locks (a callback may read
    /// or drive the breaker). A callback that panics is logged and the others still run:
    /// it cannot take a state change back, nor fail the call that caused it.
    pub(crate) fn tell(&self, name: &str, change: StateChange) {
        let listeners: Vec<Listener> = {
            let all = lock(&self.0);
            if all.is_empty() {
                return;
            }
            all.clone()
        };
        for listener in listeners {
            if catch_unwind(AssertUnwindSafe(|| listener(change))).is_err() {
                tracing::error!(breaker = %name, from = %change.from, to = %change.to, "a state-change callback panicked");
            }
        }
    }
}
