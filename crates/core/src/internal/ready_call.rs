//! [`ReadyCall`]: wait until a service is ready, then call it; [`take_ready`]: hand the
//! service `poll_ready` readied to a call made later.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

pin_project! {
    /// Drives `service` to readiness, calls it with `request`, and resolves to the call's
    /// result: the standard tower pattern for a stage that decides to call its inner
    /// service later than `call` (after a queue, a backoff, or an endpoint's readiness).
    ///
    /// It owns its clone of the service, so it is cancellation-safe: dropping it before the
    /// call drops the request and the clone, and nothing else.
    #[project = ReadyCallProj]
    pub enum ReadyCall<S, Req>
    where
        S: Service<Req>,
    {
        /// Waiting for `poll_ready`.
        Waiting { service: S, request: Option<Req> },
        /// Called: the inner service's future.
        Called { #[pin] future: S::Future },
    }
}

impl<S: Service<Req>, Req> ReadyCall<S, Req> {
    /// A future that calls `service` with `request` once it is ready.
    pub fn new(service: S, request: Req) -> Self {
        ReadyCall::Waiting {
            service,
            request: Some(request),
        }
    }
}

impl<S: Service<Req>, Req> Future for ReadyCall<S, Req> {
    type Output = Result<S::Response, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                ReadyCallProj::Waiting { service, request } => {
                    ready!(service.poll_ready(cx))?;
                    let request = request.take().expect("ReadyCall polled after the call");
                    let future = service.call(request);
                    self.set(ReadyCall::Called { future });
                }
                ReadyCallProj::Called { future } => return future.poll(cx),
            }
        }
    }
}

/// Takes the service that `poll_ready` made ready, for a call made later (after a wait, or
/// through stages built for the call), leaving a clone in its place to be driven to
/// readiness before the next call: the standard tower pattern, so that the service called
/// is the one that was made ready (a clone of tower's `Buffer` is not).
pub fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::future::{ready as ready_fut, Ready};

    #[derive(Clone)]
    struct NotReadyOnce(bool);

    impl Service<u32> for NotReadyOnce {
        type Response = u32;
        type Error = Infallible;
        type Future = Ready<Result<u32, Infallible>>;
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Ready(Ok(()))
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
        fn call(&mut self, req: u32) -> Self::Future {
            assert!(self.0, "called before ready");
            ready_fut(Ok(req * 2))
        }
    }

    #[test]
    fn calls_only_once_ready() {
        let mut fut = std::pin::pin!(ReadyCall::new(NotReadyOnce(false), 21));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(42)));
    }
}
