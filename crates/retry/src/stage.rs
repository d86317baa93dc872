//! [`Stage`]: what an engaged retry stage's clones and its calls' futures share.

use std::sync::{Mutex, OnceLock};

use tower_prism_core::internal::lock;

use crate::handle::RetryHandle;

/// The layer's handle and the service retries are sent through, behind the one `Arc` a
/// call's future holds.
///
/// A call's first attempt goes through the service `poll_ready` readied; only a retry or a
/// hedge needs a service of its own. Cloning the inner service for every call, in case it
/// retried, cost every call the clone and its drop: reference counts taken and given back
/// (a balancer's handle and topology, a fault stage's state), two locked operations each.
/// Instead the stage keeps one clone of its inner service, taken at its first call, and a
/// call that retries clones that one when its first retry is due.
pub(crate) struct Stage<S> {
    pub(crate) handle: RetryHandle,
    template: OnceLock<Template<S>>,
}

/// The clone retries are cloned from. Behind a lock, taken only when a retry is due, so
/// that the stage and its futures stay `Send` and `Sync` for a service that is only
/// `Send`.
struct Template<S> {
    service: Mutex<S>,
    /// `S::clone`, kept where `S: Clone` is known, so the futures need no such bound.
    clone: fn(&S) -> S,
}

impl<S> Stage<S> {
    pub(crate) fn new(handle: RetryHandle) -> Self {
        Stage {
            handle,
            template: OnceLock::new(),
        }
    }

    /// Keeps a clone of `inner` for retries, unless one is kept already: after the first
    /// call, one atomic load.
    #[inline]
    pub(crate) fn remember(&self, inner: &S)
    where
        S: Clone,
    {
        if self.template.get().is_none() {
            self.remember_first(inner);
        }
    }

    #[cold]
    #[inline(never)]
    fn remember_first(&self, inner: &S)
    where
        S: Clone,
    {
        self.template.get_or_init(|| Template {
            service: Mutex::new(inner.clone()),
            clone: S::clone,
        });
    }

    /// A clone of the kept service, for one call's retries and hedges; `None` before the
    /// stage's first call (a future is made only by a call, after `remember`).
    #[cold]
    pub(crate) fn fresh_service(&self) -> Option<S> {
        let template = self.template.get()?;
        // A clone that panicked while the lock was held left the service as it was.
        Some((template.clone)(&lock(&template.service)))
    }
}

impl<S> std::fmt::Debug for Stage<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}
