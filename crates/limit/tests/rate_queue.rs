//! The rate limiter's priority queue under paused time: order, shedding, cancellation,
//! refunds and timeouts.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::rate::{error, send, Echo, MS};
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, task};
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_limit::rate::{RateLimitConfig, RateLimitLayer};
use tower_prism_limit::Error;

type Prioritised = RateLimitLayer<
    tower_prism_limit::rate::Unkeyed,
    tower_prism_limit::rate::PriorityBy<fn(&(u32, &'static str)) -> u32>,
>;

type Weighed = RateLimitLayer<
    tower_prism_limit::rate::Unkeyed,
    tower_prism_limit::rate::SamePriority,
    tower_prism_limit::rate::WeightBy<fn(&(u32, &'static str)) -> u32>,
>;

fn queued_layer(queue: usize, max_wait: Duration) -> Prioritised {
    let priority: fn(&(u32, &'static str)) -> u32 = |req| req.0;
    RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(10)
            .period(Duration::from_secs(1))
            .burst(1)
            .queue_size(queue)
            .max_wait(max_wait)
            .build()
            .unwrap(),
    )
    .unwrap()
    .priority_fn(priority)
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_by_priority_then_fifo() {
    let layer = queued_layer(10, Duration::from_secs(5));
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, (0, "first")).await.unwrap();
    let done = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut handles = Vec::new();
    for req in [(1, "low"), (5, "high-a"), (3, "mid"), (5, "high-b")] {
        let fut = svc.ready().await.unwrap().call(req);
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            let (_, name) = fut.await.unwrap();
            done.lock().unwrap().push((name, start.elapsed()));
        }));
    }
    assert_eq!(layer.handle().snapshot().queued, 4);
    for h in handles {
        h.await.unwrap();
    }
    let done = done.lock().unwrap().clone();
    let order: Vec<_> = done.iter().map(|(n, _)| *n).collect();
    assert_eq!(order, ["high-a", "high-b", "mid", "low"]);
    let times: Vec<_> = done.iter().map(|(_, t)| *t).collect();
    assert_eq!(
        times,
        [100 * MS, 200 * MS, 300 * MS, 400 * MS],
        "one per refill"
    );
    assert_eq!(layer.handle().snapshot().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_sheds_the_lowest_priority() {
    let layer = queued_layer(2, Duration::from_secs(5));
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, (0, "token")).await.unwrap();
    let mut a = task::spawn(svc.ready().await.unwrap().call((1, "a")));
    let mut b = task::spawn(svc.ready().await.unwrap().call((1, "b")));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    let full = svc.ready().await.unwrap().call((1, "c")).await;
    assert_eq!(
        error(full),
        Error::QueueFull {
            retry_after: 300 * MS
        },
        "equal priority does not shed"
    );
    let mut vip = task::spawn(svc.ready().await.unwrap().call((9, "vip")));
    assert!(b.is_woken(), "the shed waiter is woken");
    assert_eq!(
        error(assert_ready!(b.poll())),
        Error::Shed {
            retry_after: 300 * MS
        }
    );
    assert_pending!(a.poll());
    assert_pending!(vip.poll());
    advance(100 * MS).await;
    assert_eq!(assert_ready!(vip.poll()).unwrap(), (9, "vip"));
    assert_pending!(a.poll());
    advance(100 * MS).await;
    assert_eq!(assert_ready!(a.poll()).unwrap(), (1, "a"));
}

/// A request refused by a full queue, or shed from it, is told when a token could come
/// for it: after the waiters served before it (as .NET's token bucket answers a full
/// queue). Neither said, so an HTTP 429 told the client to come back in 1 s when the
/// real wait was 20.
#[tokio::test(start_paused = true)]
async fn a_full_queue_and_a_shed_waiter_tell_the_wait_behind_the_queue() {
    let priority: fn(&(u32, &'static str)) -> u32 = |req| req.0;
    let layer = RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(1)
            .period(Duration::from_secs(10))
            .burst(1)
            .queue_size(1)
            .max_wait(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
    .unwrap()
    .priority_fn(priority);
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, (0, "token")).await.unwrap();
    let mut waiting = task::spawn(svc.ready().await.unwrap().call((1, "waits")));
    assert_pending!(waiting.poll());
    // The waiter's token comes in 10 s, the next one in 20 s.
    let full = error(send(&mut svc, (1, "full")).await);
    assert_eq!(
        full,
        Error::QueueFull {
            retry_after: Duration::from_secs(20)
        }
    );
    assert_eq!(full.retry_after(), Some(Duration::from_secs(20)));
    // A more important arrival takes the waiter's place, and its token: the shed waiter's
    // comes after it.
    let mut vip = task::spawn(svc.ready().await.unwrap().call((9, "vip")));
    assert_pending!(vip.poll());
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        error(assert_ready!(waiting.poll())),
        Error::Shed {
            retry_after: Duration::from_secs(19)
        }
    );
    advance(Duration::from_secs(9)).await;
    assert_eq!(assert_ready!(vip.poll()).unwrap(), (9, "vip"));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue_and_costs_nothing() {
    let layer = queued_layer(4, Duration::from_secs(5));
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, (0, "token")).await.unwrap();
    let mut first = task::spawn(svc.ready().await.unwrap().call((5, "dropped")));
    let mut second = task::spawn(svc.ready().await.unwrap().call((1, "kept")));
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    drop(first);
    assert_eq!(layer.handle().snapshot().queued, 1);
    assert!(second.is_woken(), "the next waiter is told it is first now");
    advance(100 * MS).await;
    assert_eq!(assert_ready!(second.poll()).unwrap(), (1, "kept"));
    assert_eq!(layer.handle().snapshot().tokens, 0);
    advance(100 * MS).await;
    assert_eq!(layer.handle().snapshot().tokens, 1);
}

/// A queued request whose response future is held without being polled holds at most its
/// own token, never the queue: the waiter behind it is served when the tokens for both have
/// come, the held one's token is set aside for it (taken when it is polled, given back if it
/// is dropped), and one held past its `max_wait` is timed out. The held future stayed at
/// the head, its wait running only when polled: every waiter behind it timed out.
#[tokio::test(start_paused = true)]
async fn a_held_unpolled_waiter_never_blocks_the_queue() {
    let layer = queued_layer(10, Duration::from_secs(1));
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, (0, "token")).await.unwrap();
    let start = Instant::now();
    let held = svc.ready().await.unwrap().call((0, "held"));
    let behind = svc.ready().await.unwrap().call((0, "behind"));
    assert_eq!(behind.await.unwrap(), (0, "behind"));
    assert_eq!(
        start.elapsed(),
        200 * MS,
        "the held waiter's token, then its own"
    );
    assert_eq!(layer.handle().snapshot().queued, 0);
    // Polled long after its max_wait, the held request finds the token set aside for it.
    advance(Duration::from_secs(5)).await;
    let mut held = task::spawn(held);
    assert_eq!(assert_ready!(held.poll()).unwrap(), (0, "held"));

    // Dropped with its token set aside, it gives the token back.
    send(&mut svc, (0, "token")).await.unwrap();
    let held = svc.ready().await.unwrap().call((0, "dropped"));
    let behind = svc.ready().await.unwrap().call((0, "behind"));
    assert_eq!(behind.await.unwrap(), (0, "behind"));
    assert_eq!(layer.handle().snapshot().tokens, 0);
    drop(held);
    assert_eq!(
        layer.handle().snapshot().tokens,
        1,
        "the set-aside token came back"
    );

    // Held past its max_wait before its token came (a more important request took it), it
    // gets none and leaves the queue: the next token goes to the waiter behind it.
    let prioritised = queued_layer(10, Duration::from_millis(150));
    let mut svc = prioritised.layer(Echo::new());
    send(&mut svc, (0, "token")).await.unwrap();
    let start = Instant::now();
    let held = svc.ready().await.unwrap().call((0, "held"));
    let longer = RateLimitConfig::builder()
        .rate(10)
        .period(Duration::from_secs(1))
        .burst(1)
        .queue_size(10)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    prioritised.handle().reconfigure(&longer).unwrap();
    let vip = tokio::spawn(svc.ready().await.unwrap().call((5, "vip")));
    let behind = svc.ready().await.unwrap().call((0, "behind"));
    assert_eq!(behind.await.unwrap(), (0, "behind"));
    assert_eq!(
        start.elapsed(),
        200 * MS,
        "the token the held waiter did not get"
    );
    assert_eq!(vip.await.unwrap().unwrap(), (5, "vip"));
    let mut held = task::spawn(held);
    assert_eq!(
        error(assert_ready!(held.poll())),
        Error::QueueTimeout { waited: 150 * MS }
    );
    assert_eq!(prioritised.handle().snapshot().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn tokens_of_an_admitted_but_unsent_request_are_refunded() {
    let layer = queued_layer(4, Duration::from_secs(5));
    let echo = Echo::new();
    let mut svc = layer.layer(echo.clone());
    send(&mut svc, (0, "token")).await.unwrap();
    let mut waiting = task::spawn(svc.ready().await.unwrap().call((0, "waits")));
    echo.open.store(false, Ordering::SeqCst);
    assert_pending!(waiting.poll());
    advance(100 * MS).await;
    assert_pending!(waiting.poll(), "admitted, waiting for the inner service");
    assert_eq!(layer.handle().snapshot().tokens, 0);
    drop(waiting);
    assert_eq!(layer.handle().snapshot().tokens, 1, "the token came back");
}

#[tokio::test(start_paused = true)]
async fn nobody_waits_past_max_wait() {
    let layer = queued_layer(4, Duration::from_millis(150));
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, (0, "token")).await.unwrap();
    let start = Instant::now();
    let a = tokio::spawn(svc.ready().await.unwrap().call((0, "a")));
    // Behind `a`, `b` would get a token at 200 ms, past max_wait: refused at once, told
    // the real wait, and never queued.
    let b = svc.ready().await.unwrap().call((0, "b")).await;
    assert_eq!(
        error(b),
        Error::RateLimited {
            retry_after: 200 * MS
        }
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(layer.handle().snapshot().queued, 1);
    // A more important arrival goes ahead of `a` (it can make it in 100 ms), which then
    // cannot: `a` leaves the queue at max_wait, not a moment later.
    let vip = tokio::spawn(svc.ready().await.unwrap().call((5, "vip")));
    assert_eq!(vip.await.unwrap().unwrap(), (5, "vip"));
    assert_eq!(start.elapsed(), 100 * MS);
    let err = error(a.await.unwrap());
    assert_eq!(err, Error::QueueTimeout { waited: 150 * MS });
    assert_eq!(start.elapsed(), 150 * MS);
    // A wait longer than max_wait fails at once, with the real retry time.
    let cfg = {
        let mut c = RateLimitConfig::new(1, Duration::from_secs(1));
        c.queue_size = 4;
        c.max_wait = Some(Duration::from_millis(50));
        c.burst = Some(1);
        c
    };
    layer.handle().reconfigure(&cfg).unwrap();
    advance(Duration::from_secs(2)).await;
    layer.handle().try_acquire(1).unwrap();
    let before = Instant::now();
    let err = error(send(&mut svc, (0, "too slow")).await);
    assert_eq!(
        err,
        Error::RateLimited {
            retry_after: Duration::from_secs(1)
        }
    );
    assert_eq!(before.elapsed(), Duration::ZERO);
}

/// Whatever the rate does while a request waits (here it drops to one a year), the request
/// leaves the queue at `max_wait`.
#[tokio::test(start_paused = true)]
async fn a_queued_request_never_waits_past_max_wait_when_the_rate_drops() {
    let layer = queued_layer(4, Duration::from_millis(150));
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, (0, "token")).await.unwrap();
    let start = Instant::now();
    let mut waiting = task::spawn(svc.ready().await.unwrap().call((0, "waits")));
    assert_pending!(waiting.poll());
    let slower = {
        let mut c = RateLimitConfig::new(1, RateLimitConfig::MAX_PERIOD);
        c.queue_size = 4;
        c.max_wait = Some(Duration::from_millis(150));
        c.burst = Some(1);
        c
    };
    layer.handle().reconfigure(&slower).unwrap();
    advance(149 * MS).await;
    assert_pending!(waiting.poll());
    advance(MS).await;
    assert_eq!(
        error(assert_ready!(waiting.poll())),
        Error::QueueTimeout { waited: 150 * MS }
    );
    assert_eq!(start.elapsed(), 150 * MS);
    assert_eq!(layer.handle().snapshot().queued, 0);
}

/// A reload turning the queue off keeps the requests already waiting in it, and they get
/// the tokens that refill before any new arrival. New arrivals took every refilled token
/// ahead of them (the fast path looked at the queue only while it had room), and each
/// waiter timed out after its whole `max_wait`.
#[tokio::test(start_paused = true)]
async fn waiters_kept_by_a_reload_turning_the_queue_off_go_first() {
    let layer = queued_layer(4, Duration::from_secs(1));
    let mut svc = layer.layer(Echo::new());
    send(&mut svc, (0, "token")).await.unwrap();
    let mut waiting = task::spawn(svc.ready().await.unwrap().call((0, "waits")));
    assert_pending!(waiting.poll());
    let no_queue = RateLimitConfig::builder()
        .rate(10)
        .period(Duration::from_secs(1))
        .burst(1)
        .build()
        .unwrap();
    layer.handle().reconfigure(&no_queue).unwrap();
    assert_eq!(layer.handle().snapshot().queued, 1);
    // An arrival beats the waiter to the refilled token: the token is the waiter's.
    advance(100 * MS).await;
    assert_eq!(
        error(send(&mut svc, (0, "arrival")).await),
        Error::RateLimited {
            retry_after: 100 * MS
        }
    );
    assert_eq!(assert_ready!(waiting.poll()).unwrap(), (0, "waits"));
    assert_eq!(layer.handle().snapshot().queued, 0);
    // Then, with no queue, arrivals take the tokens as they refill.
    advance(100 * MS).await;
    send(&mut svc, (0, "next")).await.unwrap();
}

/// A layer weighing each `(weight, name)` request by its first field: burst `burst`, 10 a
/// second, a queue of 10 waiting up to 10 s.
fn weighed_layer(burst: u32) -> Weighed {
    let weight: fn(&(u32, &'static str)) -> u32 = |req| req.0;
    RateLimitLayer::from_config(&weighed_config(burst))
        .unwrap()
        .weight_fn(weight)
}

fn weighed_config(burst: u32) -> RateLimitConfig {
    RateLimitConfig::builder()
        .rate(10)
        .period(Duration::from_secs(1))
        .burst(burst)
        .queue_size(10)
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A request heavier than the burst is refused at once, waiters queued or not (as governor
/// refuses it): with others waiting it joined the queue, and once at its head blocked
/// every lighter request behind it until they all timed out.
#[tokio::test(start_paused = true)]
async fn a_request_no_burst_holds_is_refused_with_others_waiting() {
    let mut svc = weighed_layer(2).layer(Echo::new());
    svc.ready().await.unwrap().call((2, "burst")).await.unwrap();
    let start = Instant::now();
    let first = tokio::spawn(svc.ready().await.unwrap().call((1, "first")));
    tokio::task::yield_now().await;
    let heavy = svc.ready().await.unwrap().call((3, "heavy")).await;
    assert!(matches!(
        error(heavy),
        Error::WeightExceedsBurst {
            weight: 3,
            burst: 2
        }
    ));
    let behind = tokio::spawn(svc.ready().await.unwrap().call((1, "behind")));
    first.await.unwrap().unwrap();
    behind.await.unwrap().unwrap();
    assert_eq!(
        start.elapsed(),
        MS * 200,
        "a token each 100 ms, none blocked"
    );
}

/// A request of weight 0 takes no token, so it is admitted at once, requests waiting or
/// not, as governor's `check_n(0)` always conforms: even by a bucket holding more than a
/// reload's lower burst, which refuses any weight. It queued behind the waiters (refused
/// when they would take longer than `max_wait`), and that bucket refused it. The handle's
/// `try_acquire(0)` is still a probe.
#[tokio::test(start_paused = true)]
async fn a_request_of_weight_zero_is_admitted_at_once() {
    let layer = weighed_layer(4);
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(Echo::new());
    svc.ready().await.unwrap().call((4, "burst")).await.unwrap();
    let start = Instant::now();
    let mut waiting = task::spawn(svc.ready().await.unwrap().call((2, "waits")));
    assert_pending!(waiting.poll());
    assert_eq!(send(&mut svc, (0, "free")).await.unwrap(), (0, "free"));
    assert_eq!(start.elapsed(), Duration::ZERO, "not queued");
    assert_eq!(limiter.snapshot().queued, 1);
    assert!(limiter.try_acquire(0).is_err(), "a probe: no token is free");
    advance(200 * MS).await;
    assert!(
        limiter.try_acquire(0).is_err(),
        "a probe: the free tokens are owed"
    );
    assert_eq!(assert_ready!(waiting.poll()).unwrap(), (2, "waits"));
    assert_eq!(limiter.snapshot().tokens, 0, "the free request took none");

    // A burst lowered below the tokens taken: the bucket refuses any weight for now.
    advance(400 * MS).await;
    svc.ready().await.unwrap().call((4, "burst")).await.unwrap();
    limiter.reconfigure(&weighed_config(2)).unwrap();
    let start = Instant::now();
    assert_eq!(send(&mut svc, (0, "free")).await.unwrap(), (0, "free"));
    assert_eq!(start.elapsed(), Duration::ZERO, "not queued");
    let mut no_queue = weighed_config(2);
    (no_queue.queue_size, no_queue.max_wait) = (0, None);
    limiter.reconfigure(&no_queue).unwrap();
    assert_eq!(send(&mut svc, (0, "free")).await.unwrap(), (0, "free"));
    assert!(matches!(
        error(send(&mut svc, (1, "one")).await),
        Error::RateLimited { .. }
    ));
}

/// A reload lowering the burst below a waiter's weight refuses that waiter, and the ones
/// behind it go on (they waited out their `max_wait` behind it).
#[tokio::test(start_paused = true)]
async fn a_waiter_a_reload_makes_too_heavy_is_refused() {
    let layer = weighed_layer(4);
    let mut svc = layer.layer(Echo::new());
    svc.ready().await.unwrap().call((4, "burst")).await.unwrap();
    let start = Instant::now();
    let heavy = tokio::spawn(svc.ready().await.unwrap().call((3, "heavy")));
    tokio::task::yield_now().await;
    let light = tokio::spawn(svc.ready().await.unwrap().call((1, "light")));
    tokio::task::yield_now().await;
    layer.handle().reconfigure(&weighed_config(2)).unwrap();
    let heavy = heavy.await.unwrap();
    assert!(matches!(
        error(heavy),
        Error::WeightExceedsBurst {
            weight: 3,
            burst: 2
        }
    ));
    light.await.unwrap().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

/// The handle's `try_acquire` does not take the token a queued request is owed: while
/// requests wait, it fails (as .NET's `AttemptAcquire`, under Polly's limiter).
#[tokio::test(start_paused = true)]
async fn try_acquire_does_not_pass_the_queue() {
    let layer = queued_layer(10, Duration::from_secs(10));
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(Echo::new());
    svc.ready().await.unwrap().call((0, "burst")).await.unwrap();
    let mut queued = task::spawn(svc.ready().await.unwrap().call((0, "queued")));
    assert_pending!(queued.poll());
    advance(MS * 100).await; // the queued request's token is here
    let passed = limiter.try_acquire(1);
    assert!(
        matches!(passed, Err(Error::RateLimited { .. })),
        "{passed:?}"
    );
    assert!(limiter.try_acquire(0).is_err(), "the free token is owed");
    assert_ready!(queued.poll()).unwrap();
}
