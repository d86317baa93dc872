//! A server's lean stack called in one future: the rate limit admits, the breaker hands
//! out its permit and the fault stage draws, each in the stack's `call`, and the inner
//! service's own future is the stack's (inside one [`StackFuture`] variant, with the
//! breaker's call and the rate limit's stamp beside it). Through the stages' own futures,
//! the same call nests three more futures, each moving the request down and the response
//! up: an HTTP server stack with every stage off cost 628 instructions per call over the
//! bare route that way, 438 this way; with a rate limit and a breaker, 1,518 instructions
//! per call in all, 1,351 (callgrind, `scripts/call-count`, stacks `http-off`, `http`).
//!
//! A stack with a retry stage (a client's) has one between the breaker and the fault
//! stage and calls through its stages; so does a call the rate limit must queue or
//! refund, and a call for which a fault is drawn goes through the fault stage's future.
//! Everything else decides as the stages' own `call`s do, in their order.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use tower_prism_breaker::direct::{Admission as BreakerAdmission, Call};
use tower_prism_core::internal::attempt;
use tower_prism_core::{BoxError, Classify};
use tower_prism_fault::InjectStatus;
use tower_prism_limit::rate::direct::Admission as RateAdmission;
use tower_prism_limit::rate::{KeyFn, RateHeaders};
use tower_service::Service;

use crate::profile::Profile;
use crate::retry_kind::RetryKind;
use crate::stack::{BreakerStage, FullStack, LeanFuture, LeanStack, StackFuture, StackFutureOf};

/// Calls `req` through a lean stack: in one future when the stack has no retry stage,
/// else through the stages.
#[inline]
pub(crate) fn call<S, P, Req>(stack: &mut LeanStack<S, P>, req: Req) -> StackFutureOf<S, P, Req>
where
    P: Profile,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    FullStack<S, P>: Service<Req, Response = S::Response, Error = BoxError>,
    BreakerStage<S, P>: Service<Req, Response = S::Response, Error = BoxError>,
    LeanStack<S, P>:
        Service<Req, Response = S::Response, Error = BoxError, Future = LeanFuture<S, P, Req>>,
    P::Classify: Classify<S::Response, BoxError>,
    P::RateKey: KeyFn<Req>,
    P::RateHeaders: RateHeaders<S::Response>,
    P::FaultStatus: InjectStatus<S::Response>,
{
    // A call refused before the inner service was called (rate limited, circuit open):
    // the rate-limit stage's future failing with the error, as it fails with its own.
    let refused = |error| StackFuture::Lean {
        future: tower_prism_limit::rate::ResponseFuture::failed(error),
    };
    if P::Retries::no_stage(stack.get_mut().get_mut()).is_none() {
        return StackFuture::Lean {
            future: stack.call(req),
        };
    }
    let stamp = match stack.admit::<Req, S::Response>(&req) {
        RateAdmission::PassThrough => None,
        RateAdmission::Admitted(stamp) => Some(stamp),
        RateAdmission::Rejected(error) => return refused(error),
        RateAdmission::Stage => {
            return StackFuture::Lean {
                future: stack.call(req),
            }
        }
    };
    // The breaker's call holds its permit from here: if the inner service's `call` panics,
    // unwinding drops it and a half-open probe's slot is given back.
    let breaker = stack.get_mut();
    let call = match breaker.admit() {
        BreakerAdmission::PassThrough => None,
        BreakerAdmission::Admitted(call) => Some(call),
        BreakerAdmission::Rejected(error) => return refused(error),
    };
    let Some(fault) = P::Retries::no_stage(breaker.get_mut()) else {
        unreachable!("a stack without a retry stage, checked above");
    };
    match fault.draw() {
        None => StackFuture::Direct {
            call: P::Retries::direct(DirectCall {
                future: fault.get_mut().call(req),
                call,
                stamp,
                headers: PhantomData,
            }),
        },
        Some(drawn) => StackFuture::Faulted {
            call: P::Retries::direct(DirectCall {
                future: fault.inject(drawn, req),
                call,
                stamp,
                headers: PhantomData,
            }),
        },
    }
}

pin_project! {
    /// A call in one future: the inner service's (or the fault stage's) future, with the
    /// breaker's call and the rate limit's stamp that complete it.
    pub struct DirectCall<F, C, H, St> {
        #[pin]
        future: F,
        call: Option<Call<C>>,
        stamp: Option<St>,
        headers: PhantomData<fn() -> H>,
    }
}

impl<F, C, H, St, T, E> Future for DirectCall<F, C, H, St>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
    H: RateHeaders<T, Stamp = St>,
{
    type Output = Result<T, BoxError>;

    /// The result completed as the stages' futures would: the breaker classifies and
    /// records it, then the rate limit's stamp goes on a response.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // A retry inside the called service (a client stack under this server's) reports
        // its waits during the poll, as it would to the breaker's own future.
        let mark = attempt::Mark::now();
        let polled = this.future.poll(cx);
        if let (Some(call), Some(event)) = (this.call.as_mut(), mark.event_since()) {
            call.retry_event(event);
        }
        let mut result = ready!(polled).map_err(Into::into);
        if let Some(call) = this.call {
            call.record(&result);
        }
        if let (Ok(response), Some(stamp)) = (&mut result, &*this.stamp) {
            H::write(stamp, response);
        }
        Poll::Ready(result)
    }
}
