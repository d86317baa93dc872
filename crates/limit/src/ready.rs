//! The readiness hand-over the services share.

/// Takes the service that `poll_ready` made ready, for a future that will call it later
/// (after a wait), leaving a clone in its place to be driven to readiness before the next
/// call: the standard tower pattern for a stage that may delay its call.
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}
