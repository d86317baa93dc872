//! [`PropagateDeadlineLayer`] and [`PropagateDeadline`]: write the deadline into each
//! attempt's request, for below a retry stage.

use std::fmt;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_prism_core::RequestDeadline;
use tower_service::Service;

use crate::carrier::{AnyRequest, Carrier};
use crate::handle::DeadlineHandle;

/// Wraps services in a [`PropagateDeadline`]: for below a retry stage, so that every
/// attempt carries the time left when it is sent, not when the first one was.
///
/// It shares its [`DeadlineHandle`] (header, `propagate` switch) with the
/// [`DeadlineLayer`](crate::DeadlineLayer) above; make it with
/// [`DeadlineLayer::propagate_layer`](crate::DeadlineLayer::propagate_layer), or with
/// [`new`](Self::new) and [`carrier`](Self::carrier).
#[derive(Debug, Clone)]
pub struct PropagateDeadlineLayer<C = AnyRequest> {
    handle: DeadlineHandle,
    carrier: C,
}

impl PropagateDeadlineLayer {
    /// A layer writing the deadline as `handle`'s stage is configured to, for requests
    /// of any type ([`AnyRequest`]: only the ambient deadline is set for the stages below).
    pub fn new(handle: &DeadlineHandle) -> Self {
        PropagateDeadlineLayer {
            handle: handle.clone(),
            carrier: AnyRequest,
        }
    }
}

impl<C> PropagateDeadlineLayer<C> {
    /// The same layer, reading and writing requests with `carrier` instead.
    pub fn carrier<C2>(self, carrier: C2) -> PropagateDeadlineLayer<C2> {
        PropagateDeadlineLayer {
            handle: self.handle,
            carrier,
        }
    }

    /// The deadline stage whose header and `propagate` switch it follows.
    pub fn handle(&self) -> &DeadlineHandle {
        &self.handle
    }

    pub(crate) fn with_carrier(handle: DeadlineHandle, carrier: C) -> Self {
        PropagateDeadlineLayer { handle, carrier }
    }
}

impl<S, C: Clone> Layer<S> for PropagateDeadlineLayer<C> {
    type Service = PropagateDeadline<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            engaged: Some(Engaged {
                handle: self.handle.clone(),
                carrier: self.carrier.clone(),
            }),
        }
    }
}

/// A service that writes the request's deadline into each request it passes on, with the
/// time left *now*: the earlier of the ambient [`RequestDeadline::current`] and the
/// deadline the request carries in process (for `http::Request`, its extension; never
/// the header, which may hold a value written for an earlier attempt). It calls the
/// inner service inside [`RequestDeadline::scope`], so the stages below see it too.
///
/// It never fails or times out a call itself; with no deadline it passes the request on
/// untouched. Errors and the response future are the inner service's.
///
/// A stage that is switched off is the same type: see [`pass_through`](Self::pass_through).
#[derive(Clone)]
pub struct PropagateDeadline<S, C = AnyRequest> {
    inner: S,
    /// `None` in pass-through mode.
    engaged: Option<Engaged<C>>,
}

/// What an engaged propagate stage needs beyond its inner service.
#[derive(Clone)]
struct Engaged<C> {
    handle: DeadlineHandle,
    carrier: C,
}

impl<S, C> PropagateDeadline<S, C> {
    /// A propagate stage that is switched off: `poll_ready` and `call` go straight to
    /// `inner`: no ambient deadline read, no carrier read or write, no
    /// [`RequestDeadline::scope`], no clock read, no atomics, no metrics, no allocation;
    /// one branch.
    ///
    /// Unlike `ServiceBuilder::option_layer` (an `Either`), the type is the same as the
    /// engaged stage's, so a stack of optional stages stays one linear type.
    pub fn pass_through(inner: S) -> Self {
        PropagateDeadline {
            inner,
            engaged: None,
        }
    }

    /// The deadline stage whose header and `propagate` switch it follows; `None` in
    /// [pass-through](Self::pass_through) mode.
    pub fn handle(&self) -> Option<&DeadlineHandle> {
        self.engaged.as_ref().map(|engaged| &engaged.handle)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for PropagateDeadline<S, C>
where
    S: Service<Req>,
    C: Carrier<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Req) -> Self::Future {
        let Some(engaged) = &mut self.engaged else {
            return self.inner.call(req);
        };
        let deadline =
            RequestDeadline::earliest(RequestDeadline::current(), engaged.carrier.read(&req, None));
        match deadline {
            None => self.inner.call(req),
            Some(deadline) => {
                engaged
                    .carrier
                    .write(&mut req, deadline, engaged.handle.write_header());
                deadline.scope(|| self.inner.call(req))
            }
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for PropagateDeadline<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("PropagateDeadline");
        debug.field("inner", &self.inner);
        match &self.engaged {
            Some(engaged) => debug
                .field("handle", &engaged.handle)
                .field("carrier", &engaged.carrier),
            None => debug.field("pass_through", &true),
        };
        debug.finish()
    }
}
