//! [`RetryKind`]: whether a profile's stack has a retry stage at all.
//!
//! A stage left out of a policy passes calls through, but its response future is still in
//! the stack's: the retry's call state (attempts, timers, the request kept to replay) is
//! hundreds of bytes, carried and copied on every call. A server profile can never have a
//! retry stage (it cannot replay what it received), so its stack is built without one,
//! and without the stage below a retry that writes each attempt's deadline into its
//! request: the fault stage is then right under the breaker.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;

use crate::components::{DeadlineLayer, PropagateService};
use crate::profile::Profile;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Retries {}
    impl Sealed for super::NoRetries {}
}

/// Whether a [`Profile`]'s stack has a retry stage: [`Retries`] (clients) or
/// [`NoRetries`] (servers). Sealed: a profile picks one of the two.
pub trait RetryKind: sealed::Sealed + Send + Sync + 'static {
    /// The retry stage over `S`, with the stage writing each attempt's deadline below it;
    /// `S` itself for a stack without retries.
    #[doc(hidden)]
    type Stage<S, P: Profile>;

    /// The retry stage over `inner`: `retry`'s, or passing calls through. `deadline`: the
    /// deadline stage, whose time left each retry attempt carries.
    #[doc(hidden)]
    fn stage<S, P: Profile>(
        retry: Option<&tower_prism_retry::RetryLayer<P::Classify, P::Replay, P::Hint>>,
        deadline: Option<&DeadlineLayer<P>>,
        inner: S,
    ) -> Self::Stage<S, P>;

    /// The stage, sending each retry to an endpoint its call has not tried (over a
    /// balancer).
    #[doc(hidden)]
    fn avoid_tried_endpoints<S, P: Profile>(stage: Self::Stage<S, P>) -> Self::Stage<S, P>;

    /// The service below the stage.
    #[doc(hidden)]
    fn get_ref<S, P: Profile>(stage: &Self::Stage<S, P>) -> &S;

    /// The service below the stage, mutably.
    #[doc(hidden)]
    fn get_mut<S, P: Profile>(stage: &mut Self::Stage<S, P>) -> &mut S;

    /// The service below the stage, the stage dropped.
    #[doc(hidden)]
    fn into_inner<S, P: Profile>(stage: Self::Stage<S, P>) -> S;

    /// The service below, when there is no stage: a server stack's breaker sits right on
    /// the fault stage, and its calls can run in one future (see [`crate::stack`]).
    #[doc(hidden)]
    fn no_stage<S, P: Profile>(stage: &Self::Stage<S, P>) -> Option<&S>;

    /// A call in one future, `T`, as the stack's future holds it: `T` itself for a stack
    /// without a retry stage; for one with, which never makes such calls, a type without
    /// values, so that the variants for them take no room in its future.
    #[doc(hidden)]
    type Direct<T: Future>: Future<Output = T::Output>;

    /// `call` as [`Self::Direct`]; made only by a stack whose
    /// [`no_stage`](Self::no_stage) answers.
    #[doc(hidden)]
    fn direct<T: Future>(call: T) -> Self::Direct<T>;

    /// Whether the stack has a retry stage: a policy's `retry` table needs one.
    #[doc(hidden)]
    const HAS_STAGE: bool;
}

/// A stack with a retry stage (engaged when the policy has a `retry` table).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retries;

/// A stack without a retry stage: a profile that cannot replay its requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoRetries;

impl RetryKind for Retries {
    const HAS_STAGE: bool = true;

    type Stage<S, P: Profile> =
        tower_prism_retry::Retry<PropagateService<S, P>, P::Classify, P::Replay, P::Hint>;

    fn stage<S, P: Profile>(
        retry: Option<&tower_prism_retry::RetryLayer<P::Classify, P::Replay, P::Hint>>,
        deadline: Option<&DeadlineLayer<P>>,
        inner: S,
    ) -> Self::Stage<S, P> {
        // Below a retry stage, every attempt's request gets the time left when it is sent;
        // without retries, the deadline stage's own write is the only one.
        let propagate = match (deadline, retry) {
            (Some(deadline), Some(_)) => deadline.propagate_layer().layer(inner),
            _ => PropagateService::<_, P>::pass_through(inner),
        };
        match retry {
            Some(layer) => layer.layer(propagate),
            None => tower_prism_retry::Retry::pass_through(propagate),
        }
    }

    fn avoid_tried_endpoints<S, P: Profile>(stage: Self::Stage<S, P>) -> Self::Stage<S, P> {
        stage.avoid_tried_endpoints()
    }

    fn get_ref<S, P: Profile>(stage: &Self::Stage<S, P>) -> &S {
        stage.get_ref().get_ref()
    }

    fn get_mut<S, P: Profile>(stage: &mut Self::Stage<S, P>) -> &mut S {
        stage.get_mut().get_mut()
    }

    fn into_inner<S, P: Profile>(stage: Self::Stage<S, P>) -> S {
        stage.into_inner().into_inner()
    }

    #[inline]
    fn no_stage<S, P: Profile>(_: &Self::Stage<S, P>) -> Option<&S> {
        None
    }

    type Direct<T: Future> = Absent<T>;

    fn direct<T: Future>(_: T) -> Absent<T> {
        unreachable!("a stack with a retry stage makes no call in one future")
    }
}

// No stage at all, not a wrapper: the fault stage below already boxes its errors as a
// retry stage would, and a wrapper's call and poll would copy the request and the
// response once more on every call.
impl RetryKind for NoRetries {
    const HAS_STAGE: bool = false;

    type Stage<S, P: Profile> = S;

    fn stage<S, P: Profile>(
        retry: Option<&tower_prism_retry::RetryLayer<P::Classify, P::Replay, P::Hint>>,
        _deadline: Option<&DeadlineLayer<P>>,
        inner: S,
    ) -> Self::Stage<S, P> {
        // `Stages::new` refuses a retry table for a profile that cannot retry.
        debug_assert!(retry.is_none(), "a retry stage for a profile without one");
        inner
    }

    fn avoid_tried_endpoints<S, P: Profile>(stage: Self::Stage<S, P>) -> Self::Stage<S, P> {
        stage
    }

    fn get_ref<S, P: Profile>(stage: &Self::Stage<S, P>) -> &S {
        stage
    }

    fn get_mut<S, P: Profile>(stage: &mut Self::Stage<S, P>) -> &mut S {
        stage
    }

    fn into_inner<S, P: Profile>(stage: Self::Stage<S, P>) -> S {
        stage
    }

    #[inline]
    fn no_stage<S, P: Profile>(stage: &Self::Stage<S, P>) -> Option<&S> {
        Some(stage)
    }

    type Direct<T: Future> = T;

    #[inline(always)]
    fn direct<T: Future>(call: T) -> T {
        call
    }
}

/// A type without values, standing for a `T` that is never made.
#[doc(hidden)]
pub struct Absent<T>(Infallible, PhantomData<T>);

impl<T: Future> Future for Absent<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<T::Output> {
        match self.0 {}
    }
}
