//! [`CircuitBreaker`], the service.

use std::task::{Context, Poll};

use tower_prism_core::{BoxError, Classify, DefaultClassifier, RequestDeadline};
use tower_service::Service;

use crate::breaker::Breaker;
use crate::future::{PermitGuard, ResponseFuture};

/// A service guarded by a circuit breaker.
///
/// `poll_ready` forwards to the inner service. `call` asks the breaker for a permit: when
/// the circuit is open (or half-open with every probe taken) the returned future fails at
/// once with [`Error::CircuitOpen`](crate::Error::CircuitOpen) and the inner service is
/// not called; otherwise the inner future runs and its classified result and duration are
/// recorded when it completes. A future dropped before completion records nothing and
/// gives its half-open probe permit back; so does a call whose inner `call`, future or
/// classifier panics. (With
/// [`count_deadline_expiry`](crate::BreakerConfig::count_deadline_expiry) on, a future
/// dropped after the deadline it was called under is recorded as a failure instead.)
///
/// Clones share the same [`Breaker`].
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S, C = DefaultClassifier> {
    inner: S,
    breaker: Breaker,
    classifier: C,
}

impl<S, C> CircuitBreaker<S, C> {
    /// `inner` behind `breaker`, classifying results with `classifier` (a
    /// [`Classify`] impl such as [`DefaultClassifier`], or a closure
    /// `Fn(Result<&Res, &E>) -> Outcome`). A [`CircuitBreakerLayer`](crate::CircuitBreakerLayer)
    /// does this for every service it wraps.
    pub fn new(inner: S, breaker: Breaker, classifier: C) -> Self {
        CircuitBreaker {
            inner,
            breaker,
            classifier,
        }
    }

    /// The shared breaker.
    pub fn handle(&self) -> &Breaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the breaker service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.acquire_at(self.breaker.now()) {
            Ok(permit) => {
                // The guard exists before the inner call: if `call` panics, unwinding drops
                // it and the permit (maybe a half-open probe slot) is given back.
                // The deadline it runs under, if a deadline stage above set one: with
                // `count_deadline_expiry`, a call dropped past it counts as a failure.
                let deadline = RequestDeadline::current();
                let guard = PermitGuard::new(self.breaker.clone(), permit, deadline);
                let future = self.inner.call(req);
                ResponseFuture::called(future, guard, self.classifier.clone())
            }
            Err(retry_after) => ResponseFuture::rejected(retry_after),
        }
    }
}
