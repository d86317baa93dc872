//! The rate limit's part of a call through a stack that runs all its stages in one future
//! (the facade's server stack): the admission made before the call, the headers written
//! on its response, without a [`ResponseFuture`](super::ResponseFuture) of its own around
//! the inner future. Not a public API: the facade's internals.

use tower_prism_core::BoxError;

use super::headers::RateHeaders;
use super::limiter::Fast;
use super::policy::{KeyFn, WeightFn};
use super::service::RateLimit;

/// What the rate limit says to a request about to be sent on.
#[doc(hidden)]
pub enum Admission<Stamp> {
    /// A switched-off rate limit: send it on; nothing goes on the response.
    PassThrough,
    /// Admitted: send it on, then [`RateHeaders::write`] the stamp on its response.
    Admitted(Stamp),
    /// Refused: fail with this error, do not send it on.
    Rejected(BoxError),
    /// Nothing decided and nothing taken: the request must go through the stage's own
    /// `call` (it waits in the queue, or a stage below may shed it and get its tokens
    /// back).
    Stage,
}

impl<S, K, P, W, H> RateLimit<S, K, P, W, H> {
    /// Admits or refuses `request` as [`call`](tower_service::Service::call) would, for a
    /// caller that sends it on itself.
    #[doc(hidden)]
    #[inline]
    pub fn admit<Req, Res>(&self, request: &Req) -> Admission<H::Stamp>
    where
        K: KeyFn<Req>,
        W: WeightFn<Req>,
        H: RateHeaders<Res>,
    {
        let Some(engaged) = self.engaged() else {
            return Admission::PassThrough;
        };
        if engaged.refund_shed {
            return Admission::Stage;
        }
        let weight = engaged.weight.weight(request);
        let bucket = engaged.key.bucket(request, &engaged.limiter);
        let limiter = &engaged.limiter;
        // `fast` takes nothing when it answers `Queue` (the queue is where tokens are
        // waited for), so the stage's own `call` can start over.
        match limiter.fast(bucket, weight) {
            Fast::Admitted(left) => Admission::Admitted(H::stamp(limiter, left)),
            Fast::Rejected(error) => Admission::Rejected(H::reject(error, limiter)),
            Fast::Queue => Admission::Stage,
        }
    }
}
