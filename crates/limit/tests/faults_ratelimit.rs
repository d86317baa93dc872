//! The rate limiter (with and without a queue) when the upstream never answers, answers
//! after an hour, panics in `call` or in its future, when the user's key, priority or weight
//! function panics, when a waker panics under the queue's lock, and when time jumps by days.
//! Afterwards nothing is wedged: no queue slot is held, the bucket refills to its burst and
//! requests are admitted on schedule. Dropped response futures and extreme configs are in
//! `faults_ratelimit_props.rs`.

mod faults_support;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use faults_support::rate::{
    assert_unwedged, call, config, fault_of, limiter_error, rate_limited, Req, PANIC,
    PANIC_IN_PRIORITY,
};
use faults_support::{must_panic, Fault, Upstream, DELIBERATE, HOUR, MS};
use tokio::time::{advance, Instant};
use tower::util::MapRequest;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_limit::rate::RateLimitLayer;
use tower_prism_limit::Error;

#[tokio::test(start_paused = true)]
async fn a_never_answering_upstream_holds_no_token_and_no_queue_slot() {
    for queue in [false, true] {
        let (limiter, upstream, mut svc) = rate_limited(&config(queue));
        let mut stuck: Vec<_> = (0..2)
            .map(|_| tokio_test::task::spawn(svc.call((0, Fault::Never))))
            .collect();
        if queue {
            // Waits for the next token, then reaches the upstream and hangs there too.
            stuck.push(tokio_test::task::spawn(svc.call((0, Fault::Never))));
        }
        for future in &mut stuck {
            assert!(future.poll().is_pending());
        }
        advance(100 * MS).await;
        for future in &mut stuck {
            assert!(future.poll().is_pending());
        }
        assert_eq!(upstream.calls(), stuck.len(), "queue: {queue}");
        assert_eq!(limiter.snapshot().queued, 0, "admitted: out of the queue");
        // Hung calls hold nothing: the limiter carries on while they hang.
        assert_unwedged(&limiter, &mut svc, queue).await;
        drop(stuck);
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_after_an_hour_holds_no_token_and_no_queue_slot() {
    for queue in [false, true] {
        let (limiter, _, mut svc) = rate_limited(&config(queue));
        let start = Instant::now();
        let n = if queue { 4 } else { 2 };
        let slow: Vec<_> = (0..n)
            .map(|_| tokio::spawn(svc.call((0, Fault::After(HOUR)))))
            .collect();
        for handle in slow {
            assert_eq!(handle.await.unwrap().unwrap(), Fault::After(HOUR));
        }
        // The queued two were admitted at 100 and 200 ms, then took an hour upstream.
        let last = if queue { HOUR + 200 * MS } else { HOUR };
        assert_eq!(start.elapsed(), last, "queue: {queue}");
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_upstreams_call_holds_no_queue_slot() {
    for queue in [false, true] {
        let (limiter, upstream, mut svc) = rate_limited(&config(queue));
        let ready = svc.ready().await.unwrap();
        must_panic(|| ready.call((0, Fault::PanicInCall)));
        assert_eq!(upstream.calls(), 1);
        assert_eq!(
            limiter.snapshot().tokens,
            1,
            "the request reached the upstream"
        );
        if queue {
            call(&mut svc, (0, Fault::Answer)).await.unwrap();
            // Queued, admitted at the next token, then the upstream panics inside the
            // response future; the waiter behind it is served at the token after.
            let start = Instant::now();
            let panics = tokio::spawn(svc.call((0, Fault::PanicInCall)));
            let behind = tokio::spawn(svc.call((0, Fault::Answer)));
            assert!(panics.await.unwrap_err().is_panic());
            assert_eq!(behind.await.unwrap().unwrap(), Fault::Answer);
            assert_eq!(start.elapsed(), 200 * MS);
        }
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_inside_the_upstreams_future_holds_no_queue_slot() {
    for queue in [false, true] {
        let (limiter, _, mut svc) = rate_limited(&config(queue));
        let n = if queue { 4 } else { 2 };
        let panicking: Vec<_> = (0..n)
            .map(|_| tokio::spawn(svc.call((0, Fault::PanicAfter(10 * MS)))))
            .collect();
        for handle in panicking {
            assert!(handle.await.unwrap_err().is_panic());
        }
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
}

/// The user's priority or weight function panicking inside `call` takes no token and no
/// queue slot; nor does a panicking key function.
#[tokio::test(start_paused = true)]
async fn a_panicking_user_function_takes_no_token_and_no_queue_slot() {
    for queue in [false, true] {
        let (limiter, upstream, mut svc) = rate_limited(&config(queue));
        // Empty the bucket, so a queued request would have to wait (the priority function
        // is only asked then).
        call(&mut svc, (0, Fault::Answer)).await.unwrap();
        call(&mut svc, (0, Fault::Answer)).await.unwrap();
        for panics in [PANIC, PANIC_IN_PRIORITY] {
            let ready = svc.ready().await.unwrap();
            if queue || panics == PANIC {
                must_panic(|| ready.call((panics, Fault::Answer)));
            } else {
                // Without a queue the priority is never asked for.
                let refused = ready.call((panics, Fault::Answer)).await;
                assert!(matches!(limiter_error(refused), Error::RateLimited { .. }));
            }
            let snap = limiter.snapshot();
            assert_eq!((snap.queued, snap.tokens), (0, 0));
        }
        assert_eq!(upstream.calls(), 2);
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
    let keyed = RateLimitLayer::from_config(&config(true))
        .unwrap()
        .key_fn(|req: &Req| {
            assert!(req.0 != PANIC, "{DELIBERATE}: the key function panicked");
            req.0
        });
    let mut svc = keyed.layer(MapRequest::new(Upstream::new(), fault_of));
    let ready = svc.ready().await.unwrap();
    must_panic(|| ready.call((PANIC, Fault::Answer)));
    let snap = keyed.handle().snapshot();
    assert_eq!((snap.queued, snap.keys), (0, 0));
    assert_eq!(
        call(&mut svc, (7, Fault::Answer)).await.unwrap(),
        Fault::Answer
    );
}

/// A waker that panics when woken: user code that runs under the queue's lock.
struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("{DELIBERATE}: a waker panicked");
    }
}

/// A waiter's waker panics while the queue's lock is held (it is woken when shed): the
/// lock is poisoned, and that changes nothing: the shed waiter learns it was shed, the
/// queue keeps its order and its count, and requests are served on schedule.
#[tokio::test(start_paused = true)]
async fn a_waker_panicking_under_the_queue_lock_changes_nothing() {
    let cfg = {
        let mut c = config(true);
        c.queue_size = 1;
        c
    };
    let (limiter, _, mut svc) = rate_limited(&cfg);
    call(&mut svc, (0, Fault::Answer)).await.unwrap();
    call(&mut svc, (0, Fault::Answer)).await.unwrap();
    let mut low = Box::pin(svc.call((0, Fault::Answer)));
    let waker = Waker::from(Arc::new(PanickingWaker));
    assert!(low
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    assert_eq!(limiter.snapshot().queued, 1);
    // A more important request sheds `low`, whose waker panics under the lock.
    let ready = svc.ready().await.unwrap();
    must_panic(|| ready.call((9, Fault::Answer)));
    let noop = Waker::noop();
    match low.as_mut().poll(&mut Context::from_waker(noop)) {
        Poll::Ready(result) => assert!(matches!(limiter_error(result), Error::Shed { .. })),
        Poll::Pending => panic!("the shed waiter must learn it was shed"),
    }
    // The poisoned lock is used as before: a waiter is queued and served at the next token.
    let start = Instant::now();
    assert_eq!(
        call(&mut svc, (0, Fault::Answer)).await.unwrap(),
        Fault::Answer
    );
    assert_eq!(start.elapsed(), 100 * MS);
    assert_unwedged(&limiter, &mut svc, true).await;
}

/// Paused time jumps by 30 days with the bucket empty and a request queued: the bucket
/// holds exactly its burst afterwards (30 days do not bank 30 days of tokens), the waiter
/// is settled at its first poll, and no slot is left.
#[tokio::test(start_paused = true)]
async fn a_time_jump_of_days_banks_no_tokens_and_leaves_no_waiter() {
    const DAYS: Duration = Duration::from_secs(30 * 86_400);
    for queue in [false, true] {
        let (limiter, _, mut svc) = rate_limited(&config(queue));
        call(&mut svc, (0, Fault::Answer)).await.unwrap();
        call(&mut svc, (0, Fault::Answer)).await.unwrap();
        let mut waiting = tokio_test::task::spawn(svc.call((0, Fault::Answer)));
        let settled_at_once = waiting.poll().is_ready();
        assert_eq!(settled_at_once, !queue);
        advance(DAYS).await;
        if queue {
            // Its timer fired at max_wait, but it is polled only now, and its token came
            // (at 100 ms) before its deadline: admitted, and out of the queue.
            assert!(waiting.poll().is_ready(), "settled at its first poll");
        }
        drop(waiting);
        let snap = limiter.snapshot();
        assert_eq!((snap.queued, snap.tokens), (0, if queue { 1 } else { 2 }));
        assert_unwedged(&limiter, &mut svc, queue).await;
    }
}
