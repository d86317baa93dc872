//! [`Reliability`]: the service a [`ReliabilityLayer`](crate::ReliabilityLayer) makes.

use std::fmt;
use std::task::{Context, Poll};

use tower_prism_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::profile::{Generic, Profile};
use crate::stack::{self, Stack, StackClone, Stacked};

/// The service a [`ReliabilityLayer`](crate::ReliabilityLayer) makes: every configured
/// stage over `S` (with the balance stage, `S` is the balancer), in the fixed order. A
/// stage that was not configured costs one branch. Clones share every stage's state.
///
/// It is a [`Service<Req>`](Service) when `S` is one whose errors convert into a
/// [`BoxError`], whose response the profile's classifier reads, and whose requests the
/// profile's retry stage can replay (the `Stacked` bound says so without naming the
/// private stages). Errors are [`BoxError`]s; [`Error::from_box`](crate::Error::from_box)
/// classifies them.
pub struct Reliability<S, P: Profile = Generic> {
    inner: Stack<S, P>,
}

impl<S, P: Profile> Reliability<S, P> {
    pub(crate) fn new(inner: Stack<S, P>) -> Self {
        Reliability { inner }
    }

    /// The service at the bottom of the stack.
    pub fn get_ref(&self) -> &S {
        stack::inner::<S, P>(&self.inner)
    }

    /// The service at the bottom of the stack, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        stack::inner_mut::<S, P>(&mut self.inner)
    }

    /// The service at the bottom of the stack, the stages above it dropped.
    pub fn into_inner(self) -> S {
        stack::into_inner::<S, P>(self.inner)
    }
}

impl<S: StackClone<P>, P: Profile> Clone for Reliability<S, P> {
    #[inline]
    fn clone(&self) -> Self {
        Reliability {
            inner: S::clone_stack(&self.inner),
        }
    }
}

impl<S: fmt::Debug, P: Profile> fmt::Debug for Reliability<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reliability")
            .field("inner", self.get_ref())
            .finish_non_exhaustive()
    }
}

impl<S, P: Profile, Req> Service<Req> for Reliability<S, P>
where
    S: Stacked<P, Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, P>;

    // The stack runs each of these inside one shared clock reading where its stages read
    // the time (the limiter, the breaker, the budget, the balancer): they read the counter
    // once. A server's lean stack enters it only while its stages decide a call (see
    // `direct::call`).

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        S::poll_ready(&mut self.inner, cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(S::call(&mut self.inner, req))
    }
}
