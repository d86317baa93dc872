//! [`ResponseFuture`]: calls the inner service at once, or after waiting in the queue.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_prism_core::internal::{received, refusal, ReadyCall};
use tower_prism_core::BoxError;
use tower_service::Service;

use super::headers::{NoHeaders, RateHeaders};
use super::limiter::RateLimiter;
use super::waiter::{Turn, Waiter};

/// Gives tokens back if an admitted request is dropped before it reaches the inner service.
struct Permit {
    waiter_bucket: Option<u64>,
    weight: u32,
    limiter: RateLimiter,
    armed: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.armed {
            self.limiter.refund(self.waiter_bucket, self.weight);
        }
    }
}

pin_project! {
    /// A request waiting in the queue, then driving a clone of the service to readiness.
    /// Boxed (the queue is the cold path), so that the response future of an admitted call
    /// stays the size of the inner future.
    struct Queued<S, Req>
    where
        S: Service<Req>,
    {
        // Set while waiting for a turn; taken when the turn comes.
        waiter: Option<Waiter>,
        // When the request was queued: a deadline its caller sent counts from then.
        received: Instant,
        #[pin]
        sleep: Sleep,
        // Set once admitted, armed until the request reaches the inner service.
        permit: Option<Permit>,
        // Whether a request a stage below sheds at once gives its tokens back.
        refund_shed: bool,
        #[pin]
        call: ReadyCall<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, H>
    where
        S: Service<Req>,
        H: RateHeaders<S::Response>,
    {
        // Admitted: the stamp goes on the response.
        Called { #[pin] future: S::Future, stamp: H::Stamp },
        // Pass-through: the inner future as it is.
        Forward { #[pin] future: S::Future },
        Queued { queued: Pin<Box<Queued<S, Req>>>, stamp: H::Stamp },
        Failed { error: Option<BoxError> },
    }
}

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<S, Req, H = NoHeaders>
    where
        S: Service<Req>,
        H: RateHeaders<S::Response>,
    {
        #[pin]
        state: State<S, Req, H>,
    }
}

impl<S: Service<Req>, Req, H: RateHeaders<S::Response>> fmt::Debug for ResponseFuture<S, Req, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Forward { .. } => "forward",
            State::Queued { queued, .. } if queued.waiter.is_some() => "waiting",
            State::Queued { .. } => "admitted",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S: Service<Req>, Req, H: RateHeaders<S::Response>> ResponseFuture<S, Req, H> {
    pub(crate) fn called(future: S::Future, stamp: H::Stamp) -> Self {
        ResponseFuture {
            state: State::Called { future, stamp },
        }
    }

    pub(crate) fn forward(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Forward { future },
        }
    }

    /// A future that fails with `error` when polled (a request refused before it was
    /// sent on; the facade's single-future stack refuses through it too).
    #[doc(hidden)]
    pub fn failed(error: BoxError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }

    pub(crate) fn waiting(
        waiter: Waiter,
        service: S,
        request: Req,
        stamp: H::Stamp,
        refund_shed: bool,
    ) -> Self {
        let sleep = tokio::time::sleep_until(waiter.deadline);
        ResponseFuture {
            state: State::Queued {
                queued: Box::pin(Queued {
                    received: waiter.enqueued(),
                    waiter: Some(waiter),
                    sleep,
                    permit: None,
                    refund_shed,
                    call: ReadyCall::new(service, request),
                }),
                stamp,
            },
        }
    }
}

impl<S, Req, H> Future for ResponseFuture<S, Req, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    H: RateHeaders<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Called { future, stamp } => {
                    let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                    H::write(stamp, &mut response);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Forward { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                StateProj::Failed { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error));
                }
                StateProj::Queued { queued, stamp } => {
                    match poll_queued::<S, Req, H>(queued.as_mut(), stamp, cx) {
                        Polled::Answered(answer) => return answer,
                        Polled::Failed(error) => state.set(State::Failed { error: Some(error) }),
                    }
                }
            }
        }
    }
}

/// What [`poll_queued`] came to: the answer, or a turn refused (the state becomes
/// `Failed`, polled next).
enum Polled<T> {
    Answered(Poll<Result<T, BoxError>>),
    Failed(BoxError),
}

/// A queued request's poll: wait for its turn, then drive the service to readiness and
/// call it. Out of line (the queue is the cold path), so that an admitted call's poll stays
/// small enough to inline into its caller.
#[inline(never)]
fn poll_queued<S, Req, H>(
    queued: Pin<&mut Queued<S, Req>>,
    stamp: &H::Stamp,
    cx: &mut Context<'_>,
) -> Polled<S::Response>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    H: RateHeaders<S::Response>,
{
    let mut q = queued.project();
    while let Some(w) = q.waiter.as_mut() {
        match w.poll_turn(Instant::now(), cx.waker()) {
            Turn::Done(Ok(())) => {
                let w = q.waiter.take().expect("checked above");
                *q.permit = Some(Permit {
                    waiter_bucket: w.bucket,
                    weight: w.weight,
                    limiter: w.limiter().clone(),
                    armed: true,
                });
            }
            Turn::Done(Err(error)) => {
                let w = q.waiter.take().expect("checked above");
                return Polled::Failed(H::reject(error, w.limiter()));
            }
            Turn::SleepUntil(at) => {
                let mut sleep = q.sleep.as_mut();
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                if sleep.poll(cx).is_pending() {
                    return Polled::Answered(Poll::Pending);
                }
            }
        }
    }
    // Admitted: drive the service to readiness, then call it. Until the call the permit
    // stays armed, so dropping the future (or a failed `poll_ready`) refunds the tokens. It
    // is disarmed while polling: a call made in this poll, even one that panics, has spent
    // them.
    if let Some(permit) = q.permit.as_mut() {
        permit.armed = false;
    }
    let mark = q.refund_shed.then(refusal::Mark::now);
    let result = received::scope(*q.received, || q.call.as_mut().poll(cx));
    if matches!(*q.call, ReadyCall::Waiting { .. }) {
        if let Some(permit) = q.permit.as_mut() {
            permit.armed = true;
        }
    } else if let Some(mut permit) = q.permit.take() {
        // Called in this poll: with `refund_shed`, a stage below that refused the request
        // at once (a concurrency limit shedding it) hands its tokens back, as an admitted
        // call's are in `call_admitted`.
        permit.armed = mark.is_some_and(refusal::Mark::refused_since);
    }
    Polled::Answered(result.map(|result| {
        let mut response = result.map_err(Into::into)?;
        H::write(stamp, &mut response);
        Ok(response)
    }))
}
