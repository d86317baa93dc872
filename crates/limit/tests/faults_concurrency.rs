//! The concurrency limiter (fixed, AIMD and gradient; with and without `max_wait`) when the
//! upstream never answers, answers after an hour, panics in `call` or in its future, when
//! the user's classifier panics, when time jumps by days, and when a waiter woken for a
//! freed permit is dropped before it takes it. Afterwards nothing is wedged:
//! every permit and waiter count is back where it started and healthy calls go through.
//! Dropped response futures and extreme configs are in `faults_concurrency_props.rs`.

mod faults_support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faults_support::concurrency::{assert_unwedged, call, configs};
use faults_support::{must_panic, Fault, Upstream, HOUR, MS};
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::Outcome;
use tower_prism_limit::concurrency::{ConcurrencyConfig, ConcurrencyLimitLayer};
use tower_prism_limit::Error;

#[tokio::test(start_paused = true)]
async fn a_never_answering_upstream_holds_permits_only_until_the_futures_are_dropped() {
    for (case, cfg) in configs() {
        let layer = ConcurrencyLimitLayer::from_config(&cfg).unwrap();
        let limiter = layer.handle().clone();
        let mut svc = layer.layer(Upstream::new());
        let limit = limiter.snapshot().limit;
        let mut stuck = Vec::new();
        for _ in 0..limit {
            stuck.push(svc.ready().await.unwrap().call(Fault::Never));
        }
        assert_eq!(limiter.snapshot().in_flight, limit, "{case}");
        // Full: refused at once, or after max_wait; either way nothing more is held.
        let refused = call(&mut svc, Fault::Answer).await.unwrap_err();
        assert!(
            refused.downcast_ref::<Error>().is_some(),
            "{case}: {refused}"
        );
        assert_eq!(limiter.snapshot().in_flight, limit, "{case}");
        // The caller's own timeout drops each call: its permit comes back.
        for future in stuck {
            assert!(tokio::time::timeout(HOUR, future).await.is_err(), "{case}");
        }
        assert_unwedged(&limiter, &mut svc, &case).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_after_an_hour_gives_the_permit_back_and_keeps_the_limit_in_bounds() {
    for (case, cfg) in configs() {
        let layer = ConcurrencyLimitLayer::from_config(&cfg).unwrap();
        let limiter = layer.handle().clone();
        let mut svc = layer.layer(Upstream::new());
        let start = Instant::now();
        let limit = limiter.snapshot().limit;
        let slow: Vec<_> = (0..limit)
            .map(|_| {
                let future = svc.call(Fault::After(HOUR));
                tokio::spawn(future)
            })
            .collect();
        for handle in slow {
            assert_eq!(handle.await.unwrap().unwrap(), Fault::After(HOUR), "{case}");
        }
        assert_eq!(start.elapsed(), HOUR, "{case}");
        assert_unwedged(&limiter, &mut svc, &case).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_upstreams_call_gives_the_permit_back() {
    for (case, cfg) in configs() {
        let layer = ConcurrencyLimitLayer::from_config(&cfg).unwrap();
        let limiter = layer.handle().clone();
        let upstream = Upstream::new();
        let mut svc = layer.layer(upstream.clone());
        let ready = svc.ready().await.unwrap();
        must_panic(|| ready.call(Fault::PanicInCall));
        assert_eq!(upstream.calls(), 1, "{case}");
        assert_unwedged(&limiter, &mut svc, &case).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_upstreams_call_after_a_wait_gives_the_permit_back() {
    let layer = ConcurrencyLimitLayer::from_config(&{
        let mut c = ConcurrencyConfig::fixed(1);
        c.max_wait = Some(100 * MS);
        c
    })
    .unwrap();
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(Upstream::new());
    let holder = tokio::spawn(svc.ready().await.unwrap().call(Fault::After(10 * MS)));
    // Waits for the holder's permit, gets it at 10 ms, then panics calling the upstream.
    let waiter = tokio::spawn(svc.ready().await.unwrap().call(Fault::PanicInCall));
    holder.await.unwrap().unwrap();
    assert!(waiter.await.unwrap_err().is_panic());
    assert_unwedged(&limiter, &mut svc, "fixed(1), max_wait").await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_inside_the_upstreams_future_gives_the_permit_back() {
    for (case, cfg) in configs() {
        let layer = ConcurrencyLimitLayer::from_config(&cfg).unwrap();
        let limiter = layer.handle().clone();
        let mut svc = layer.layer(Upstream::new());
        let future = svc.ready().await.unwrap().call(Fault::PanicAfter(10 * MS));
        assert_eq!(limiter.snapshot().in_flight, 1, "{case}");
        assert!(tokio::spawn(future).await.unwrap_err().is_panic(), "{case}");
        assert_unwedged(&limiter, &mut svc, &case).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gets_the_permit_of_a_call_whose_future_panicked() {
    let layer = ConcurrencyLimitLayer::from_config(&{
        let mut c = ConcurrencyConfig::fixed(1);
        c.max_wait = Some(100 * MS);
        c
    })
    .unwrap();
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(Upstream::new());
    let start = Instant::now();
    let holder = tokio::spawn(svc.ready().await.unwrap().call(Fault::PanicAfter(10 * MS)));
    let waiter = tokio::spawn(svc.ready().await.unwrap().call(Fault::Answer));
    assert!(holder.await.unwrap_err().is_panic());
    assert_eq!(waiter.await.unwrap().unwrap(), Fault::Answer);
    assert_eq!(
        start.elapsed(),
        10 * MS,
        "handed over at once, not at max_wait"
    );
    assert_unwedged(&limiter, &mut svc, "fixed(1), max_wait").await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_gives_the_permit_back_and_the_limit_still_adapts() {
    let panics = Arc::new(AtomicBool::new(true));
    let switch = panics.clone();
    let classifier = move |_: Result<&Fault, &Infallible>| {
        if switch.load(Ordering::SeqCst) {
            panic!("{}: the classifier panicked", faults_support::DELIBERATE);
        }
        Outcome::Success
    };
    let cfg = &configs()[2].1; // AIMD, fail fast
    let layer = ConcurrencyLimitLayer::builder(cfg.clone())
        .classify(classifier)
        .build()
        .unwrap();
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(Upstream::new());
    for _ in 0..3 {
        let future = svc.ready().await.unwrap().call(Fault::Answer);
        assert!(tokio::spawn(future).await.unwrap_err().is_panic());
        assert_eq!(limiter.snapshot().in_flight, 0);
    }
    // The algorithm's state was not left locked or half-updated: two calls that keep the
    // limit busy and succeed raise it (AIMD).
    panics.store(false, Ordering::SeqCst);
    let before = limiter.snapshot().limit;
    let busy: Vec<_> = (0..before)
        .map(|_| tokio::spawn(svc.call(Fault::After(MS))))
        .collect();
    for handle in busy {
        handle.await.unwrap().unwrap();
    }
    assert!(
        limiter.snapshot().limit > before,
        "{:?}",
        limiter.snapshot()
    );
    assert_unwedged(&limiter, &mut svc, "aimd, panicking classifier").await;
}

/// Paused time jumps by 30 days while calls are in flight and waiting: the calls finish,
/// the waiters time out, the 30-day latency samples leave the limit within its bounds.
#[tokio::test(start_paused = true)]
async fn a_time_jump_of_days_leaves_nothing_held() {
    const DAYS: Duration = Duration::from_secs(30 * 86_400);
    for (case, cfg) in configs() {
        let layer = ConcurrencyLimitLayer::from_config(&cfg).unwrap();
        let limiter = layer.handle().clone();
        let mut svc = layer.layer(Upstream::new());
        let limit = limiter.snapshot().limit;
        let mut held: Vec<_> = (0..limit)
            .map(|_| tokio_test::task::spawn(svc.call(Fault::After(DAYS))))
            .collect();
        let mut extra = tokio_test::task::spawn(svc.call(Fault::Answer));
        for future in &mut held {
            assert!(future.poll().is_pending());
        }
        let refused_at_once = extra.poll().is_ready();
        tokio::time::advance(DAYS).await;
        for future in &mut held {
            match future.poll() {
                std::task::Poll::Ready(result) => assert!(result.is_ok(), "{case}"),
                std::task::Poll::Pending => panic!("{case}: still pending after the jump"),
            }
        }
        assert!(
            refused_at_once || extra.poll().is_ready(),
            "{case}: the extra call is settled (timed out, or admitted late)"
        );
        drop((held, extra));
        assert_unwedged(&limiter, &mut svc, &case).await;
    }
}

/// Regression (issue 10, item 8): `max_wait = "500000000000y"` was accepted, and a request
/// could then wait for a permit for centuries (the wait was capped only where its
/// nanoseconds overflowed a `u64`). Now the config is refused, naming the field, and a wait
/// of the longest accepted length ends on time.
#[tokio::test(start_paused = true)]
async fn an_absurd_max_wait_is_refused_and_the_longest_wait_ends_on_time() {
    let eons = Duration::from_secs(500_000_000_000 * 31_557_600);
    let refused = ConcurrencyConfig::builder()
        .min_limit(1)
        .max_limit(1)
        .initial_limit(1)
        .max_wait(eons)
        .build()
        .unwrap_err();
    assert_eq!(refused.field(), "max_wait");
    // A config that skipped validation is checked again by the layer.
    let mut unchecked = ConcurrencyConfig::fixed(1);
    unchecked.max_wait = Some(eons);
    let refused = ConcurrencyLimitLayer::from_config(&unchecked).unwrap_err();
    assert_eq!(refused.field(), "max_wait");
    let text = "initial_limit = 1\nmin_limit = 1\nmax_limit = 1\nmax_wait = \"500000000000y\"";
    let cfg: ConcurrencyConfig = toml::from_str(text).unwrap();
    assert_eq!(cfg.validate().unwrap_err().field(), "max_wait");

    let layer = ConcurrencyLimitLayer::from_config(&{
        let mut c = ConcurrencyConfig::fixed(1);
        c.max_wait = Some(ConcurrencyConfig::MAX_WAIT);
        c
    })
    .unwrap();
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(Upstream::new());
    let _holder = svc.ready().await.unwrap().call(Fault::Never);
    let start = Instant::now();
    let waited = call(&mut svc, Fault::Answer).await.unwrap_err();
    assert!(matches!(
        waited.downcast_ref::<Error>(),
        Some(Error::ConcurrencyTimeout { .. })
    ));
    assert_eq!(start.elapsed(), ConcurrencyConfig::MAX_WAIT);
    assert_eq!(limiter.snapshot().waiting, 0);
}

/// A waiter woken for a freed permit and dropped before it takes it (its caller gave up
/// at that moment) passes the wake-up on: the next waiter takes the permit at once, not
/// at the end of its `max_wait`. The same when the woken waiter's permit is taken but the
/// upstream is not ready yet and it is dropped then.
#[tokio::test(start_paused = true)]
async fn a_woken_waiter_dropped_passes_the_permit_to_the_next() {
    let mut cfg = ConcurrencyConfig::fixed(1);
    cfg.max_wait = Some(Duration::from_secs(60));
    let layer = ConcurrencyLimitLayer::from_config(&cfg).unwrap();
    let limiter = layer.handle().clone();
    let upstream = Upstream::new();
    let mut svc = layer.layer(upstream.clone());
    for drop_after_admission in [false, true] {
        let mut holder =
            tokio_test::task::spawn(svc.ready().await.unwrap().call(Fault::After(10 * MS)));
        assert!(holder.poll().is_pending());
        let mut woken = tokio_test::task::spawn(svc.ready().await.unwrap().call(Fault::Never));
        let mut next = tokio_test::task::spawn(svc.ready().await.unwrap().call(Fault::Answer));
        assert!(woken.poll().is_pending());
        assert!(next.poll().is_pending());
        assert_eq!(limiter.snapshot().waiting, 2);
        if drop_after_admission {
            upstream.ready.store(false, Ordering::SeqCst);
        }
        tokio::time::sleep(10 * MS).await;
        assert_eq!(
            holder.poll().map(Result::unwrap),
            std::task::Poll::Ready(Fault::After(10 * MS))
        );
        if drop_after_admission {
            assert!(woken.is_woken());
            assert!(
                woken.poll().is_pending(),
                "admitted, the upstream not ready"
            );
            assert_eq!(limiter.snapshot().in_flight, 1);
        }
        drop(woken);
        upstream.ready.store(true, Ordering::SeqCst);
        assert!(next.is_woken(), "the wake-up was passed on");
        let start = Instant::now();
        assert_eq!(next.await.unwrap(), Fault::Answer);
        assert_eq!(start.elapsed(), Duration::ZERO);
        let snap = limiter.snapshot();
        assert_eq!((snap.in_flight, snap.waiting), (0, 0));
    }
}
