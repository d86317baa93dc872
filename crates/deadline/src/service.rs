//! [`Deadline`], the service.

use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_prism_core::{BoxError, RequestDeadline};
use tower_service::Service;

use crate::carrier::{AnyRequest, Carrier};
use crate::decide::choose;
use crate::future::{Expiry, ResponseFuture};
use crate::handle::DeadlineHandle;

/// A service whose calls must answer before a deadline: the earliest of the policy's
/// `timeout` from now, the deadline the request carries (read by the [`Carrier`]) and the
/// ambient [`RequestDeadline::current`] of a stage above.
///
/// `poll_ready` forwards to the inner service. `call`:
/// - with no deadline at all, calls the inner service and returns its future as it is
///   (no timer);
/// - with a deadline already passed, fails at once with
///   [`Error::Expired`](crate::Error::Expired) and does not call the inner service;
/// - otherwise writes the deadline into the request through the carrier, calls the inner
///   service inside [`RequestDeadline::scope`] (so the stages below see it), and races
///   the inner future against the deadline: when the deadline passes first, the inner
///   future is dropped and the call fails with `Error::Expired`.
///
/// The inner service's errors pass through as [`BoxError`]. Clones share the same
/// [`DeadlineHandle`].
#[derive(Debug, Clone)]
pub struct Deadline<S, C = AnyRequest> {
    inner: S,
    handle: DeadlineHandle,
    carrier: C,
}

impl<S, C> Deadline<S, C> {
    pub(crate) fn new(inner: S, handle: DeadlineHandle, carrier: C) -> Self {
        Deadline {
            inner,
            handle,
            carrier,
        }
    }

    /// The shared stage: [`snapshot`](DeadlineHandle::snapshot),
    /// [`reconfigure`](DeadlineHandle::reconfigure).
    pub fn handle(&self) -> &DeadlineHandle {
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

    /// The inner service, consuming the deadline service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for Deadline<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Carrier<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let request = RequestDeadline::earliest(
            self.carrier.read(&req, self.handle.read_header()),
            RequestDeadline::current(),
        );
        let policy = self.handle.timeout();
        // Idle (no deadline at all): no clock read, no timer.
        let chosen = match (policy, request) {
            (None, None) => None,
            _ => choose(policy, request, Instant::now()),
        };
        let Some(chosen) = chosen else {
            return ResponseFuture::plain(self.inner.call(req));
        };
        if chosen.allows.is_zero() {
            return ResponseFuture::expired(self.handle.clone(), chosen.reason);
        }
        let deadline = chosen.deadline;
        self.carrier
            .write(&mut req, deadline, self.handle.write_header());
        let future = deadline.scope(|| self.inner.call(req));
        let expiry = Expiry {
            deadline: deadline.instant(),
            handle: self.handle.clone(),
            after: chosen.allows,
            reason: chosen.reason,
        };
        ResponseFuture::timed(future, expiry)
    }
}
