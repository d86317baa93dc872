//! [`Fault`], the service.

use std::task::{Context, Poll};

use http::StatusCode;
use tower_prism_core::BoxError;
use tower_service::Service;

use crate::error::Error;
use crate::future::{Injected, ResponseFuture};
use crate::handle::FaultHandle;
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
#[derive(Debug, Clone)]
pub struct Fault<S, I = NoStatus> {
    inner: S,
    handle: FaultHandle,
    status: I,
}

impl<S, I> Fault<S, I> {
    pub(crate) fn new(inner: S, handle: FaultHandle, status: I) -> Self {
        Fault {
            inner,
            handle,
            status,
        }
    }

    /// The shared stage: [`snapshot`](FaultHandle::snapshot),
    /// [`reconfigure`](FaultHandle::reconfigure).
    pub fn handle(&self) -> &FaultHandle {
        &self.handle
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
        match self.handle.shared.draw() {
            // The common case (off, nothing to inject, or no fault drawn) stays small
            // enough to inline into the caller.
            None => ResponseFuture::called(self.inner.call(req)),
            Some(decision) => self.inject(decision, req),
        }
    }
}

impl<S, I> Fault<S, I> {
    /// The call with `decision`'s faults: a delay, an injected answer, or both.
    #[inline(never)]
    fn inject<Req>(&mut self, decision: Decision, req: Req) -> ResponseFuture<S, Req>
    where
        S: Service<Req> + Clone,
        I: InjectStatus<S::Response>,
    {
        let sleep = decision.delay.map(tokio::time::sleep);
        let Some(fault) = decision.fault else {
            return match sleep {
                None => ResponseFuture::called(self.inner.call(req)),
                Some(sleep) => {
                    // The ready service goes with the call; a clone, to be made ready, stays.
                    let clone = self.inner.clone();
                    let ready = std::mem::replace(&mut self.inner, clone);
                    ResponseFuture::delayed(sleep, ready, req)
                }
            };
        };
        let (counted, injected) = match fault {
            Exclusive::Error => (fault, Injected::Error(Error::Injected)),
            Exclusive::Abort => (fault, Injected::Error(Error::aborted())),
            Exclusive::Status(code) => match StatusCode::from_u16(code)
                .ok()
                .and_then(|status| self.status.response(status))
            {
                Some(response) => (fault, Injected::Response(response)),
                None => (Exclusive::Error, Injected::Error(Error::Injected)),
            },
        };
        self.handle.shared.count(counted);
        ResponseFuture::injected(sleep, injected)
    }
}
