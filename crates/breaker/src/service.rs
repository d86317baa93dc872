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
///
/// A breaker made with [`pass_through`](CircuitBreaker::pass_through) is switched off: it
/// only forwards to the inner service.
#[derive(Clone)]
pub struct CircuitBreaker<S, C = DefaultClassifier> {
    inner: S,
    /// `None` in pass-through mode: the one branch a switched-off breaker costs.
    engaged: Option<Engaged<C>>,
}

/// What an engaged breaker service holds besides its inner service.
#[derive(Clone)]
struct Engaged<C> {
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
            engaged: Some(Engaged {
                breaker,
                classifier,
            }),
        }
    }

    /// A circuit breaker that is switched off: `poll_ready` and `call` go straight to
    /// `inner`, with no permit, no clock read, no atomic operation, no metric, no tracing
    /// event and no allocation; the only cost is one branch. Inner errors come back as the
    /// same [`BoxError`] an engaged breaker returns (they still downcast to the inner
    /// error type).
    ///
    /// Unlike `ServiceBuilder::option_layer` (an `Either`), the type is the same as the
    /// engaged breaker's, so a stack of optional stages stays one linear type.
    pub fn pass_through(inner: S) -> Self {
        CircuitBreaker {
            inner,
            engaged: None,
        }
    }

    /// This stage over `inner` instead, sharing its breaker (see
    /// `RateLimit::with_inner` in `tower-prism-limit`). Not a public API: the facade's
    /// internals.
    #[doc(hidden)]
    pub fn with_inner<T>(&self, inner: T) -> CircuitBreaker<T, C>
    where
        C: Clone,
    {
        CircuitBreaker {
            inner,
            engaged: self.engaged.clone(),
        }
    }

    /// The shared breaker; `None` in [pass-through](CircuitBreaker::pass_through) mode.
    pub fn handle(&self) -> Option<&Breaker> {
        self.engaged.as_ref().map(|e| &e.breaker)
    }

    /// The shared breaker and the classifier; `None` in pass-through mode.
    pub(crate) fn engaged_parts(&self) -> Option<(&Breaker, &C)> {
        self.engaged.as_ref().map(|e| (&e.breaker, &e.classifier))
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

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(engaged) = &self.engaged else {
            return ResponseFuture::pass_through(self.inner.call(req));
        };
        let breaker = &engaged.breaker;
        match breaker.acquire_at(breaker.now()) {
            Ok(permit) => {
                // The deadline it runs under, if a deadline stage above set one: with
                // `count_deadline_expiry`, a call dropped past it counts as a failure.
                let deadline = RequestDeadline::current();
                let classifier = engaged.classifier.clone();
                if permit.is_probe() {
                    // The guard exists before the inner call: if `call` panics, unwinding
                    // drops it and the half-open probe slot is given back.
                    let guard = PermitGuard::new(breaker.clone(), permit, deadline);
                    let future = self.inner.call(req);
                    return ResponseFuture::called(future, guard, classifier);
                }
                // A closed permit holds nothing to give back if `call` panics, so nothing
                // that unwinding must drop is alive across the call: the compiler can then
                // build the inner future in place instead of copying it (hundreds of bytes
                // per call, once per stage of a stack).
                let future = self.inner.call(req);
                ResponseFuture::called(
                    future,
                    PermitGuard::new(breaker.clone(), permit, deadline),
                    classifier,
                )
            }
            Err(retry_after) => ResponseFuture::rejected(retry_after),
        }
    }
}

impl<S: std::fmt::Debug, C: std::fmt::Debug> std::fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("CircuitBreaker");
        d.field("inner", &self.inner);
        match &self.engaged {
            Some(engaged) => d
                .field("breaker", &engaged.breaker)
                .field("classifier", &engaged.classifier),
            None => d.field("pass_through", &true),
        };
        d.finish()
    }
}
