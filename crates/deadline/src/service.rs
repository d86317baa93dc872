//! [`Deadline`], the service.

use std::fmt;
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
///
/// A stage that is switched off is the same type: see [`pass_through`](Self::pass_through).
#[derive(Clone)]
pub struct Deadline<S, C = AnyRequest> {
    inner: S,
    /// `None` in pass-through mode.
    engaged: Option<Engaged<C>>,
}

/// What an engaged deadline stage needs beyond its inner service.
#[derive(Clone)]
struct Engaged<C> {
    handle: DeadlineHandle,
    carrier: C,
}

impl<S, C> Deadline<S, C> {
    pub(crate) fn new(inner: S, handle: DeadlineHandle, carrier: C) -> Self {
        Deadline {
            inner,
            engaged: Some(Engaged { handle, carrier }),
        }
    }

    /// A deadline stage that is switched off: `poll_ready` and `call` go straight to
    /// `inner` (its errors boxed into [`BoxError`], as the engaged stage does): no clock
    /// read, no carrier read or write, no ambient [`RequestDeadline::scope`], no timer, no
    /// atomics, no metrics, no allocation; one branch.
    ///
    /// Unlike `ServiceBuilder::option_layer` (an `Either`), the type is the same as the
    /// engaged stage's, so a stack of optional stages stays one linear type.
    ///
    /// ```
    /// use tower::{service_fn, Service, ServiceExt};
    /// use tower_prism_deadline::Deadline;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let echo = service_fn(|n: u32| async move { Ok::<_, tower::BoxError>(n) });
    /// let mut svc: Deadline<_> = Deadline::pass_through(echo);
    /// assert!(svc.handle().is_none());
    /// assert_eq!(svc.ready().await?.call(7).await?, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pass_through(inner: S) -> Self {
        Deadline {
            inner,
            engaged: None,
        }
    }

    /// The shared stage: [`snapshot`](DeadlineHandle::snapshot),
    /// [`reconfigure`](DeadlineHandle::reconfigure); `None` in
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

    #[inline]
    fn call(&mut self, mut req: Req) -> Self::Future {
        let Some(engaged) = &mut self.engaged else {
            return ResponseFuture::plain(self.inner.call(req));
        };
        let request = RequestDeadline::earliest(
            engaged.carrier.read(&req, engaged.handle.read_header()),
            RequestDeadline::current(),
        );
        let policy = engaged.handle.timeout();
        // Idle (no deadline at all): no clock read, no timer.
        let chosen = match (policy, request) {
            (None, None) => None,
            _ => choose(policy, request, Instant::now()),
        };
        let Some(chosen) = chosen else {
            return ResponseFuture::plain(self.inner.call(req));
        };
        if chosen.allows.is_zero() {
            return ResponseFuture::expired(engaged.handle.clone(), chosen.reason);
        }
        let deadline = chosen.deadline;
        engaged
            .carrier
            .write(&mut req, deadline, engaged.handle.write_header());
        let future = deadline.scope(|| self.inner.call(req));
        let expiry = Expiry {
            deadline: deadline.instant(),
            handle: engaged.handle.clone(),
            after: chosen.allows,
            reason: chosen.reason,
        };
        ResponseFuture::timed(future, expiry)
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Deadline<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Deadline");
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
