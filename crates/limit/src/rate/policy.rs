//! What the limiter reads from a request: its key, priority and weight.
//!
//! Each is a small trait with a default (no key, priority 0, weight 1) and a wrapper for a
//! closure, set with [`RateLimitLayer::key_fn`], [`RateLimitLayer::priority_fn`] and
//! [`RateLimitLayer::weight_fn`]. The defaults are zero-sized and compile away.
//!
//! [`RateLimitLayer::key_fn`]: super::RateLimitLayer::key_fn
//! [`RateLimitLayer::priority_fn`]: super::RateLimitLayer::priority_fn
//! [`RateLimitLayer::weight_fn`]: super::RateLimitLayer::weight_fn

use std::fmt;
use std::hash::Hash;

use super::limiter::RateLimiter;

/// Picks the bucket a request draws from.
pub trait KeyFn<Req> {
    /// `None` for the shared bucket, else the hash of the request's key.
    fn bucket(&self, request: &Req, limiter: &RateLimiter) -> Option<u64>;
}

/// Gives a waiting request its priority: higher is served first.
pub trait PriorityFn<Req> {
    /// The request's priority.
    fn priority(&self, request: &Req) -> u32;
}

/// Gives a request its cost in tokens.
pub trait WeightFn<Req> {
    /// The request's weight (0 is free: admitted at once, requests waiting or not).
    fn weight(&self, request: &Req) -> u32;
}

/// Every request draws from the one shared bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unkeyed;

impl<Req> KeyFn<Req> for Unkeyed {
    #[inline]
    fn bucket(&self, _: &Req, _: &RateLimiter) -> Option<u64> {
        None
    }
}

/// Every request has priority 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct SamePriority;

impl<Req> PriorityFn<Req> for SamePriority {
    #[inline]
    fn priority(&self, _: &Req) -> u32 {
        0
    }
}

/// Every request costs one token.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitWeight;

impl<Req> WeightFn<Req> for UnitWeight {
    #[inline]
    fn weight(&self, _: &Req) -> u32 {
        1
    }
}

macro_rules! closure_wrapper {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<F>(pub(crate) F);

        impl<F> fmt::Debug for $name<F> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name))
                    .field(&std::any::type_name::<F>())
                    .finish()
            }
        }
    };
}

closure_wrapper!(
    /// A key closure: each distinct key gets its own bucket.
    KeyBy
);
closure_wrapper!(
    /// A priority closure.
    PriorityBy
);
closure_wrapper!(
    /// A weight closure.
    WeightBy
);

impl<Req, F, K> KeyFn<Req> for KeyBy<F>
where
    F: Fn(&Req) -> K,
    K: Hash,
{
    #[inline]
    fn bucket(&self, request: &Req, limiter: &RateLimiter) -> Option<u64> {
        Some(limiter.hash_key(&(self.0)(request)))
    }
}

impl<Req, F> PriorityFn<Req> for PriorityBy<F>
where
    F: Fn(&Req) -> u32,
{
    #[inline]
    fn priority(&self, request: &Req) -> u32 {
        (self.0)(request)
    }
}

impl<Req, F> WeightFn<Req> for WeightBy<F>
where
    F: Fn(&Req) -> u32,
{
    #[inline]
    fn weight(&self, request: &Req) -> u32 {
        (self.0)(request)
    }
}
