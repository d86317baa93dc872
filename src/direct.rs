//! A server's lean stack ([`DirectStack`]) called in one future: the rate limit admits,
//! the breaker hands out its permit and the fault stage draws, each in the stack's `call`,
//! and the inner service's own future is the stack's (inside one [`StackFuture`] variant,
//! with the breaker's call and the rate limit's stamp beside it). Through the stages' own
//! futures, the same call nests three more futures, each moving the request down and the
//! response up: an HTTP server stack with every stage off cost 628 instructions per call
//! over the bare route that way, 438 this way; with a rate limit and a breaker, 1,518
//! instructions per call in all, 1,351 (callgrind, `scripts/call-count`, stacks
//! `http-off`, `http`).
//!
//! A call the rate limit must queue or refund goes through the stages' own futures, the
//! stages put over the service for that call; a call for which a fault is drawn goes
//! through the fault stage's future. Everything else decides as the stages' own `call`s
//! do, in their order.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use tower_prism_breaker::direct::{Admission as BreakerAdmission, Call};
use tower_prism_core::internal::{attempt, reading};
use tower_prism_core::{BoxError, Classify};
use tower_prism_fault::{Drawn, InjectStatus};
use tower_prism_limit::rate::direct::Admission as RateAdmission;
use tower_prism_limit::rate::{KeyFn, RateHeaders};
use tower_service::Service;

use crate::profile::Profile;
use crate::retry_kind::RetryKind;
use crate::stack::{
    BreakerStage, Detached, DirectStack, FullStack, LeanFuture, LeanStack, StackFuture,
    StackFutureOf,
};

/// Calls `req` through a server's lean stack in one future: the stages decide, then the
/// service (or the fault stage's injection) is called.
#[inline]
pub(crate) fn call<S, P, Req>(stack: &mut DirectStack<S, P>, req: Req) -> StackFutureOf<S, P, Req>
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
    // The stages decide in one clock reading, left before the service is called: the
    // future then goes from the service's `call` to the caller with nothing between
    // (dropping the scope's guard after it was built moved it once more).
    let decided = {
        let _scope = reading::enter();
        decide::<S, P, Req>(stack.stages(), &req)
    };
    match decided {
        // Refused before the inner service was called (rate limited, circuit open): the
        // rate-limit stage's future failing with the error, as it fails with its own.
        Decided::Refused(error) => StackFuture::Lean {
            future: tower_prism_limit::rate::ResponseFuture::failed(error),
        },
        Decided::Stage => {
            let mut stages = stack.attached();
            StackFuture::Lean {
                future: reading::shared_with(req, |req| stages.call(req)),
            }
        }
        Decided::Call { stamp, call, drawn } => {
            let (stages, inner) = stack.parts();
            match drawn {
                None => StackFuture::Direct {
                    call: P::Retries::direct(DirectCall {
                        future: inner.call(req),
                        call,
                        stamp,
                        headers: PhantomData,
                    }),
                },
                Some(drawn) => StackFuture::Faulted {
                    call: P::Retries::direct(DirectCall {
                        future: DirectStack::<S, P>::fault(stages).inject(inner, drawn, req),
                        call,
                        stamp,
                        headers: PhantomData,
                    }),
                },
            }
        }
    }
}

/// What the stages of a direct stack decided for a call.
enum Decided<Stamp, C> {
    /// Refused with this error: the service is not called.
    Refused(BoxError),
    /// The call must go through the stages' own futures (the rate limit queues it).
    Stage,
    /// Call the service, then complete the call with the breaker's `call` and the rate
    /// limit's `stamp`; with the faults `drawn`, through the fault stage's injection.
    Call {
        stamp: Option<Stamp>,
        call: Option<Call<C>>,
        drawn: Option<Drawn>,
    },
}

/// The stages' decisions, in their order: the rate limit admits, the breaker hands out its
/// permit (held from here: if the service's `call` panics, unwinding drops it and a
/// half-open probe's slot is given back), the fault stage draws.
#[inline(always)]
fn decide<S, P, Req>(
    stages: &LeanStack<Detached, P>,
    req: &Req,
) -> Decided<<P::RateHeaders as RateHeaders<S::Response>>::Stamp, P::Classify>
where
    P: Profile,
    S: Service<Req>,
    P::RateKey: KeyFn<Req>,
    P::RateHeaders: RateHeaders<S::Response>,
{
    let stamp = match stages.admit::<Req, S::Response>(req) {
        RateAdmission::PassThrough => None,
        RateAdmission::Admitted(stamp) => Some(stamp),
        RateAdmission::Rejected(error) => return Decided::Refused(error),
        RateAdmission::Stage => return Decided::Stage,
    };
    let call = match stages.get_ref().admit() {
        BreakerAdmission::PassThrough => None,
        BreakerAdmission::Admitted(call) => Some(call),
        BreakerAdmission::Rejected(error) => return Decided::Refused(error),
    };
    let drawn = DirectStack::<S, P>::fault(stages).draw();
    Decided::Call { stamp, call, drawn }
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
        let polled = match this.call.as_mut() {
            // A retry inside the called service (a client stack under this server's)
            // reports its waits during the poll, as it would to the breaker's own future.
            Some(call) => {
                let mark = attempt::Mark::now();
                let polled = this.future.poll(cx);
                if let Some(event) = mark.event_since() {
                    call.retry_event(event);
                }
                polled
            }
            None => this.future.poll(cx),
        };
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
