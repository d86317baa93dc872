//! What the Redis limiter reads from a request: the key of its bucket.

use std::fmt::{self, Display};

use crate::rate::Unkeyed;

/// Picks the Redis bucket a request draws from: `None` for the limit's shared bucket.
pub trait RedisKeyFn<Req> {
    /// The request's key, as it appears in the Redis key.
    fn key(&self, request: &Req) -> Option<String>;
}

impl<Req> RedisKeyFn<Req> for Unkeyed {
    fn key(&self, _: &Req) -> Option<String> {
        None
    }
}

/// A key closure for the Redis limiter: each distinct key gets its own Redis bucket. Set
/// with [`RedisRateLimitLayer::key_fn`](super::RedisRateLimitLayer::key_fn).
#[derive(Clone, Copy)]
pub struct RedisKeyBy<F>(pub(super) F);

impl<F> fmt::Debug for RedisKeyBy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisKeyBy")
            .field(&std::any::type_name::<F>())
            .finish()
    }
}

impl<Req, F, T> RedisKeyFn<Req> for RedisKeyBy<F>
where
    F: Fn(&Req) -> T,
    T: Display,
{
    fn key(&self, request: &Req) -> Option<String> {
        Some((self.0)(request).to_string())
    }
}
