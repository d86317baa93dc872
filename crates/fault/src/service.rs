//! [`Fault`], the service.

use std::fmt;
use std::task::{Context, Poll};

use http::StatusCode;
use tower_prism_core::{BoxError, GrpcCode};
use tower_service::Service;

use crate::error::Error;
use crate::future::{Injected, ResponseFuture};
use crate::handle::{ActiveFault, FaultHandle};
use crate::plan::{Decision, Exclusive};
use crate::status::{InjectStatus, NoStatus};

/// A service with faults injected in front of it.
///
/// `poll_ready` forwards to the inner service. `call` draws the call's faults: most
/// calls (and every call while the stage is off or injects nothing) go straight to the
/// inner service. A delayed call takes the ready inner service with it (leaving a clone
/// in its place, which is why `S: Clone`) and calls it after the delay; a call that gets
/// an error, an abort or a status never reaches the inner service.
///
/// Clones share the same [`FaultHandle`].
///
/// A stage that is switched off is the same type: see [`pass_through`](Self::pass_through).
#[derive(Clone)]
pub struct Fault<S, I = NoStatus> {
    inner: S,
    /// `None` in pass-through mode.
    engaged: Option<Engaged<I>>,
}

/// What an engaged fault stage needs beyond its inner service.
#[derive(Clone)]
struct Engaged<I> {
    handle: FaultHandle,
    status: I,
}

impl<S, I> Fault<S, I> {
    pub(crate) fn new(inner: S, handle: FaultHandle, status: I) -> Self {
        Fault {
            inner,
            engaged: Some(Engaged { handle, status }),
        }
    }

    /// A fault stage that is switched off: `poll_ready` and `call` go straight to
    /// `inner` (its errors boxed into [`BoxError`], as the engaged stage does): no draw,
    /// no clock read, no atomics, no metrics, no allocation; one branch.
    ///
    /// Unlike `ServiceBuilder::option_layer` (an `Either`), the type is the same as the
    /// engaged stage's, so a stack of optional stages stays one linear type.
    ///
    /// ```
    /// use tower::{service_fn, Service, ServiceExt};
    /// use tower_prism_fault::Fault;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let echo = service_fn(|n: u32| async move { Ok::<_, tower::BoxError>(n) });
    /// let mut svc: Fault<_> = Fault::pass_through(echo);
    /// assert!(svc.handle().is_none());
    /// assert_eq!(svc.ready().await?.call(7).await?, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pass_through(inner: S) -> Self {
        Fault {
            inner,
            engaged: None,
        }
    }

    /// The shared stage: [`snapshot`](FaultHandle::snapshot),
    /// [`reconfigure`](FaultHandle::reconfigure); `None` in
    /// [pass-through](Self::pass_through) mode.
    pub fn handle(&self) -> Option<&FaultHandle> {
        self.engaged.as_ref().map(|engaged| &engaged.handle)
    }

    /// This stage over `inner` instead, sharing its state (see `RateLimit::with_inner` in
    /// `tower-prism-limit`). Not a public API: the facade's internals.
    #[doc(hidden)]
    pub fn with_inner<T>(&self, inner: T) -> Fault<T, I>
    where
        I: Clone,
    {
        Fault {
            inner,
            engaged: self.engaged.clone(),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the fault service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, I, Req> Service<Req> for Fault<S, I>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    I: InjectStatus<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(engaged) = &self.engaged else {
            return ResponseFuture::called(self.inner.call(req));
        };
        match engaged.handle.shared.draw() {
            // The common case (off, nothing to inject, or no fault drawn) stays small
            // enough to inline into the caller.
            None => ResponseFuture::called(self.inner.call(req)),
            Some((decision, active)) => engaged.inject(&mut self.inner, decision, active, req),
        }
    }
}

/// A fault drawn for one call by [`Fault::draw`], to be injected by [`Fault::inject`].
#[doc(hidden)]
pub struct Drawn(Decision, ActiveFault);

impl<S, I> Fault<S, I> {
    /// Draws this call's faults as [`call`](Service::call) does first, for a caller that
    /// calls the inner service itself when nothing is drawn (the facade's single-future
    /// stack): `None` when the stage is off or the draw injects nothing.
    #[doc(hidden)]
    #[inline]
    pub fn draw(&self) -> Option<Drawn> {
        let engaged = self.engaged.as_ref()?;
        let (decision, active) = engaged.handle.shared.draw()?;
        Some(Drawn(decision, active))
    }

    /// The call to `inner` with the faults [`draw`](Self::draw) drew, as
    /// [`call`](Service::call) makes it to its own inner service (the caller's stage may
    /// hold none: see [`with_inner`](Self::with_inner)).
    #[doc(hidden)]
    pub fn inject<T, Req>(&self, inner: &mut T, drawn: Drawn, req: Req) -> ResponseFuture<T, Req>
    where
        T: Service<Req> + Clone,
        I: InjectStatus<T::Response>,
    {
        match &self.engaged {
            Some(engaged) => engaged.inject(inner, drawn.0, drawn.1, req),
            // Only an engaged stage draws.
            None => ResponseFuture::called(inner.call(req)),
        }
    }
}

impl<I> Engaged<I> {
    /// The call to `inner` with `decision`'s faults: a delay, an injected answer, or both;
    /// `active` goes with it until its delay is over (a delay alone) or it is answered.
    #[inline(never)]
    fn inject<S, Req>(
        &self,
        inner: &mut S,
        decision: Decision,
        active: ActiveFault,
        req: Req,
    ) -> ResponseFuture<S, Req>
    where
        S: Service<Req> + Clone,
        I: InjectStatus<S::Response>,
    {
        let sleep = decision.delay.map(tokio::time::sleep);
        let Some(fault) = decision.fault else {
            return match sleep {
                None => ResponseFuture::called(inner.call(req)),
                Some(sleep) => {
                    // The ready service goes with the call; a clone, to be made ready, stays.
                    let clone = inner.clone();
                    let ready = std::mem::replace(inner, clone);
                    ResponseFuture::delayed(sleep, ready, req, active)
                }
            };
        };
        let response = match fault {
            Exclusive::Error => Err(Error::Injected),
            Exclusive::Abort => Err(Error::aborted()),
            Exclusive::Status(code) => Ok(StatusCode::from_u16(code)
                .ok()
                .and_then(|status| self.status.response(status))),
            Exclusive::Grpc(code) => Ok(GrpcCode::from_i32(i32::from(code))
                .and_then(|code| self.status.grpc_response(code))),
        };
        let (counted, injected) = match response {
            Err(error) => (fault, Injected::Error(error)),
            Ok(Some(response)) => (fault, Injected::Response(response)),
            Ok(None) => (Exclusive::Error, Injected::Error(Error::Injected)),
        };
        self.handle.shared.count(counted);
        ResponseFuture::injected(sleep, injected, active)
    }
}

impl<S: fmt::Debug, I: fmt::Debug> fmt::Debug for Fault<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Fault");
        debug.field("inner", &self.inner);
        match &self.engaged {
            Some(engaged) => debug
                .field("handle", &engaged.handle)
                .field("status", &engaged.status),
            None => debug.field("pass_through", &true),
        };
        debug.finish()
    }
}
