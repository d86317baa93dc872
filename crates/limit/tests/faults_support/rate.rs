//! The limiter, request shape and checks the rate limiter's fault tests share.

use std::time::Duration;

use tokio::time::{advance, Instant};
use tower::util::MapRequest;
use tower::BoxError;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_limit::rate::{RateLimitConfig, RateLimitLayer, RateLimiter};
use tower_prism_limit::Error;

use super::{Fault, Upstream, DELIBERATE, MS};
/// A request: its priority (`PANIC` makes the user's functions panic) and what the upstream
/// does with it.
pub type Req = (u32, Fault);

/// The priority that makes the user's weight function (asked first) panic.
pub const PANIC: u32 = u32::MAX;
/// The priority that makes the user's priority function (asked only to queue) panic.
pub const PANIC_IN_PRIORITY: u32 = u32::MAX - 1;

/// 10 a second, a burst of 2, and a queue of 4 waiting up to 500 ms (or no queue).
pub fn config(queue: bool) -> RateLimitConfig {
    {
        let mut c = RateLimitConfig::new(10, Duration::from_secs(1));
        c.burst = Some(2);
        c.queue_size = if queue { 4 } else { 0 };
        c.max_wait = queue.then_some(500 * MS);
        c
    }
}

pub fn priority(req: &Req) -> u32 {
    assert!(
        req.0 < PANIC_IN_PRIORITY,
        "{DELIBERATE}: the priority function panicked"
    );
    req.0
}

pub fn weight(req: &Req) -> u32 {
    assert!(req.0 != PANIC, "{DELIBERATE}: the weight function panicked");
    1
}

pub fn fault_of(req: Req) -> Fault {
    req.1
}

/// A limiter of `cfg` in front of a misbehaving upstream, ordering waiters by priority.
pub fn rate_limited(
    cfg: &RateLimitConfig,
) -> (
    RateLimiter,
    Upstream,
    impl Service<Req, Response = Fault, Error = BoxError, Future: Send + 'static> + Clone,
) {
    let upstream = Upstream::new();
    let inner = MapRequest::new(upstream.clone(), fault_of as fn(Req) -> Fault);
    let layer = RateLimitLayer::from_config(cfg)
        .unwrap()
        .priority_fn(priority as fn(&Req) -> u32)
        .weight_fn(weight as fn(&Req) -> u32);
    let limiter = layer.handle().clone();
    (limiter, upstream, layer.layer(inner))
}

pub async fn call<S>(svc: &mut S, req: Req) -> Result<Fault, BoxError>
where
    S: Service<Req, Response = Fault, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

pub fn limiter_error(result: Result<Fault, BoxError>) -> Error {
    let err = result.expect_err("expected a rejection");
    err.downcast_ref::<Error>()
        .cloned()
        .unwrap_or_else(|| panic!("not a rate limiter error: {err}"))
}

/// No queue slot held; after a second the bucket is full (exactly the burst); the burst
/// is admitted at once, and the next request waits for the next token (queue) or is told
/// to come back then (no queue).
pub async fn assert_unwedged<S>(limiter: &RateLimiter, svc: &mut S, queue: bool)
where
    S: Service<Req, Response = Fault, Error = BoxError>,
{
    assert_eq!(limiter.snapshot().queued, 0, "queue: {queue}");
    advance(Duration::from_secs(1)).await;
    assert_eq!(limiter.snapshot().tokens, 2, "queue: {queue}");
    let start = Instant::now();
    for _ in 0..2 {
        assert_eq!(call(svc, (0, Fault::Answer)).await.unwrap(), Fault::Answer);
    }
    let next = call(svc, (0, Fault::Answer)).await;
    if queue {
        assert_eq!(next.unwrap(), Fault::Answer);
        assert_eq!(start.elapsed(), 100 * MS, "served at the next token");
    } else {
        assert_eq!(
            limiter_error(next),
            Error::RateLimited {
                retry_after: 100 * MS
            }
        );
    }
    assert_eq!(limiter.snapshot().queued, 0);
}
