//! The breaker's part of a call through a stack that runs all its stages in one future
//! (the facade's server stack): the permit asked for before the call, the result recorded
//! after it, without a [`ResponseFuture`](crate::ResponseFuture) of its own around the
//! inner future. Not a public API: the facade's internals.

use tower_prism_core::internal::attempt;
use tower_prism_core::{BoxError, Classify, RequestDeadline};

use crate::error::Error;
use crate::future::{record_result, PermitGuard};
use crate::service::CircuitBreaker;

/// What the breaker says to a call about to be made.
#[doc(hidden)]
pub enum Admission<C> {
    /// A switched-off breaker: call, record nothing.
    PassThrough,
    /// Call, and hand the result to the [`Call`].
    Admitted(Call<C>),
    /// The circuit is open (or half-open with every probe taken): fail with this error
    /// ([`Error::CircuitOpen`]) and do not call.
    Rejected(BoxError),
}

/// A call the breaker admitted: holds its permit until [`record`](Call::record) is
/// given the result. Dropped before, it gives the permit back (or records a failure,
/// as the breaker's own future does: see
/// [`BreakerConfig::count_deadline_expiry`](crate::BreakerConfig::count_deadline_expiry)).
#[doc(hidden)]
pub struct Call<C> {
    guard: PermitGuard,
    classifier: C,
}

impl<C> Call<C> {
    /// Follows what a retry inside the called service reported during a poll (see
    /// [`attempt`](tower_prism_core::internal::attempt)), as the breaker's own future does.
    #[inline]
    pub fn retry_event(&mut self, event: attempt::Event) {
        self.guard.retry_event(event);
    }

    /// Classifies and records `result` (once: a second call records nothing).
    #[inline(always)]
    pub fn record<T>(&mut self, result: &Result<T, BoxError>)
    where
        C: Classify<T, BoxError>,
    {
        record_result(&mut self.guard, &self.classifier, result)
    }
}

impl<S, C: Clone> CircuitBreaker<S, C> {
    /// Asks for a permit for a call the caller makes itself (the facade's single-future
    /// stack), as [`call`](tower_service::Service::call) does before calling the inner
    /// service.
    #[doc(hidden)]
    #[inline]
    pub fn admit(&self) -> Admission<C> {
        let Some((breaker, classifier)) = self.engaged_parts() else {
            return Admission::PassThrough;
        };
        match breaker.acquire_at(breaker.now()) {
            Ok(permit) => Admission::Admitted(Call {
                guard: PermitGuard::new(breaker.clone(), permit, RequestDeadline::current()),
                classifier: classifier.clone(),
            }),
            Err(retry_after) => Admission::Rejected(Box::new(Error::CircuitOpen { retry_after })),
        }
    }
}
