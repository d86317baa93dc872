//! [`ReplayRequest`]: how a request is copied for a retry.

/// Makes the copy of a request that a retry sends.
///
/// The retry layer calls [`replay`](ReplayRequest::replay) once when a call starts (before
/// the first attempt consumes the request) to keep a copy, the template. After a retryable
/// failure it asks [`can_replay`](ReplayRequest::can_replay) of the template (no: give up
/// with that failure at once); when the retry is sent it replays the template again (the
/// last attempt sends the template itself). `None` at the start means "send once, never
/// retry". The answers for one template must agree. Implemented by [`CloneRequest`] for
/// `Clone` requests, by any closure `Fn(&Req) -> Option<Req>`, and for HTTP by
/// [`ReplayIdempotent`](crate::ReplayIdempotent).
///
/// ```
/// use tower_prism_retry::ReplayRequest;
///
/// // Retry only requests that say they may be retried.
/// struct Job { id: u32, retry_safe: bool }
/// let replay = |job: &Job| job.retry_safe.then(|| Job { id: job.id, retry_safe: true });
/// assert!(replay.replay(&Job { id: 1, retry_safe: true }).is_some());
/// assert!(replay.replay(&Job { id: 2, retry_safe: false }).is_none());
/// ```
pub trait ReplayRequest<Req> {
    /// A copy of `req` to send as a retry, or `None` if it cannot be retried.
    fn replay(&self, req: &Req) -> Option<Req>;

    /// Whether [`replay`](Self::replay) would give a copy of `req` now. The default makes
    /// one and drops it; implement it where that can be answered without copying.
    fn can_replay(&self, req: &Req) -> bool {
        self.replay(req).is_some()
    }

    /// Whether a copy of `req` sent now, beside the copies still in flight (a hedge),
    /// could be sent whole: `false` while an earlier copy is still reading what the copies
    /// share, such as a [`ReplayBody`](crate::ReplayBody) streaming a slow upload. The
    /// retry stage then holds the hedge back (taking nothing from the budget) and looks
    /// again after another hedge delay. The default is `true`.
    fn can_hedge(&self, req: &Req) -> bool {
        let _ = req;
        true
    }

    /// Marks `copy`, about to be sent as a retry or a hedge after `previous` attempts of
    /// the same call, as its protocol asks: [`ReplayBoxed`](crate::ReplayBoxed) writes
    /// gRPC's `grpc-previous-rpc-attempts` (gRFC A6) into a gRPC request. The default
    /// marks nothing.
    fn mark_attempt(&self, copy: &mut Req, previous: u32) {
        let _ = (copy, previous);
    }
}

/// Replays a request by cloning it (the default; needs `Req: Clone`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneRequest;

impl<Req: Clone> ReplayRequest<Req> for CloneRequest {
    #[inline]
    fn replay(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }

    #[inline]
    fn can_replay(&self, _req: &Req) -> bool {
        true
    }
}

impl<F, Req> ReplayRequest<Req> for F
where
    F: Fn(&Req) -> Option<Req>,
{
    #[inline]
    fn replay(&self, req: &Req) -> Option<Req> {
        self(req)
    }
}
