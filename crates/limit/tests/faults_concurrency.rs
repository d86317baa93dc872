//! The concurrency limiter (fixed, AIMD and gradient; with and without `max_wait`) when the
//! upstream never answers, answers after an hour, panics in `call` or in its future, when
//! the user's classifier panics, when time jumps by days, and when response futures are
//! dropped at any point. Afterwards nothing is wedged: every permit and waiter count is back
//! where it started and healthy calls go through.

mod faults_support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faults_support::{must_panic, Fault, Upstream, HOUR, MS};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::BoxError;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::Outcome;
use tower_prism_limit::concurrency::{
    AimdConfig, ConcurrencyConfig, ConcurrencyLimitLayer, ConcurrencyLimiter, GradientConfig,
    LimitAlgorithm,
};
use tower_prism_limit::Error;

/// Every kind of limiter under test: fixed, AIMD (with a latency threshold) and gradient,
/// each failing fast and waiting up to 100 ms.
fn configs() -> Vec<(String, ConcurrencyConfig)> {
    let adaptive = |algorithm| {
        let mut c = ConcurrencyConfig::default();
        c.initial_limit = 2;
        c.min_limit = 1;
        c.max_limit = 10;
        c.algorithm = algorithm;
        c
    };
    let kinds = [
        ("fixed", ConcurrencyConfig::fixed(2)),
        (
            "aimd",
            adaptive(LimitAlgorithm::Aimd({
                let mut c = AimdConfig::default();
                c.latency_threshold = Some(Duration::from_secs(1));
                c
            })),
        ),
        (
            "gradient",
            adaptive(LimitAlgorithm::Gradient(GradientConfig::default())),
        ),
    ];
    let mut all = Vec::new();
    for (name, cfg) in kinds {
        all.push((format!("{name}, fail fast"), cfg.clone()));
        let waiting = {
            let mut c = cfg;
            c.max_wait = Some(100 * MS);
            c
        };
        all.push((format!("{name}, max_wait 100ms"), waiting));
    }
    all
}

async fn call<S>(svc: &mut S, fault: Fault) -> Result<Fault, BoxError>
where
    S: Service<Fault, Response = Fault, Error = BoxError>,
{
    svc.ready().await?.call(fault).await
}

/// Nothing held, nobody waiting, the limit within its bounds, and a healthy call answered.
async fn assert_unwedged<S>(limiter: &ConcurrencyLimiter, svc: &mut S, case: &str)
where
    S: Service<Fault, Response = Fault, Error = BoxError>,
{
    let snap = limiter.snapshot();
    assert_eq!((snap.in_flight, snap.waiting), (0, 0), "{case}: {snap:?}");
    assert!(
        snap.min_limit <= snap.limit && snap.limit <= snap.max_limit,
        "{case}: {snap:?}"
    );
    assert_eq!(
        call(svc, Fault::Answer).await.unwrap(),
        Fault::Answer,
        "{case}"
    );
    assert_eq!(limiter.snapshot().in_flight, 0, "{case}");
}

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

/// One step of the cancellation property test.
#[derive(Debug, Clone)]
enum Step {
    /// A new call: answers after this many ms (0 at once; `None` never).
    Call(Option<u64>),
    /// Polls call `i` (mod the number of calls).
    Poll(usize),
    /// Drops call `i`, wherever it is: not yet polled, waiting, or in the upstream.
    Drop(usize),
    /// Lets this many ms pass.
    Advance(u64),
    /// Makes the upstream ready or not (admitted calls then wait before calling it).
    Ready(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => proptest::option::weighted(0.8, 0u64..50).prop_map(Step::Call),
        3 => any::<usize>().prop_map(Step::Poll),
        2 => any::<usize>().prop_map(Step::Drop),
        2 => (0u64..80).prop_map(Step::Advance),
        1 => any::<bool>().prop_map(Step::Ready),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Response futures dropped at random points (before the first poll, while waiting for a
    /// permit, while the upstream is not ready, mid-call): once every future is gone, every
    /// permit and waiter count is back at zero, and the limiter serves calls as before.
    #[test]
    fn dropping_response_futures_anywhere_leaks_no_permit(
        config in 0usize..6,
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (case, cfg) = configs().swap_remove(config);
            let layer = ConcurrencyLimitLayer::from_config(&cfg).unwrap();
            let limiter = layer.handle().clone();
            let upstream = Upstream::new();
            let mut svc = layer.layer(upstream.clone());
            let mut calls = Vec::new();
            for step in steps {
                match step {
                    Step::Call(after) => {
                        let fault = after.map_or(Fault::Never, |ms| Fault::After(Duration::from_millis(ms)));
                        calls.push(Some(tokio_test::task::spawn(svc.call(fault))));
                    }
                    Step::Poll(i) if !calls.is_empty() => {
                        let i = i % calls.len();
                        if let Some(call) = calls[i].as_mut() {
                            if call.poll().is_ready() {
                                calls[i] = None;
                            }
                        }
                    }
                    Step::Drop(i) if !calls.is_empty() => {
                        let i = i % calls.len();
                        calls[i] = None;
                    }
                    Step::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                    Step::Ready(ready) => upstream.ready.store(ready, Ordering::SeqCst),
                    _ => {}
                }
                let snap = limiter.snapshot();
                let live = calls.iter().flatten().count();
                prop_assert!(snap.in_flight as usize <= live, "{case}: {snap:?}, {live} live");
            }
            drop(calls);
            upstream.ready.store(true, Ordering::SeqCst);
            assert_unwedged(&limiter, &mut svc, &case).await;
            Ok(())
        })?;
    }
}

fn any_algorithm() -> impl Strategy<Value = LimitAlgorithm> {
    // Mostly sane values, sometimes extreme ones.
    let count = prop_oneof![6 => 1u32..8, 1 => Just(u32::MAX), 1 => any::<u32>()];
    prop_oneof![
        (
            prop_oneof![6 => 0.01f64..0.99, 1 => Just(f64::NAN), 1 => any::<f64>()],
            count.clone(),
            proptest::option::of(prop_oneof![6 => 1u64..10_000_000_000, 1 => any::<u64>()]),
        )
            .prop_map(|(backoff_ratio, increase_by, threshold)| {
                LimitAlgorithm::Aimd({
                    let mut c = AimdConfig::default();
                    c.backoff_ratio = backoff_ratio;
                    c.increase_by = increase_by;
                    c.latency_threshold = threshold.map(Duration::from_nanos);
                    c
                })
            }),
        (
            prop_oneof![6 => 0.01f64..=1.0, 1 => any::<f64>()],
            prop_oneof![6 => 1.0f64..3.0, 1 => Just(f64::MAX), 1 => any::<f64>()],
            count.clone(),
            count,
        )
            .prop_map(|(smoothing, tolerance, long_window, queue_size)| {
                LimitAlgorithm::Gradient({
                    let mut c = GradientConfig::default();
                    c.smoothing = smoothing;
                    c.tolerance = tolerance;
                    c.long_window = long_window;
                    c.queue_size = queue_size;
                    c
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any config, however extreme, is refused with a typed error or builds a limiter that
    /// takes calls (quick, hour-long, failed by a timeout) without panicking, keeps its
    /// limit within its bounds, and gives every permit back.
    #[test]
    fn any_config_builds_a_limiter_that_never_panics(
        limits in prop_oneof![
            // (initial, min, max), in order...
            6 => (1u32..20, 0u32..20, 0u32..20).prop_map(|(min, a, b)| (min + a, min, min + a + b)),
            // ...or anything.
            1 => (any::<u32>(), any::<u32>(), prop_oneof![Just(u32::MAX), any::<u32>()]),
        ],
        max_wait in proptest::option::of(prop_oneof![6 => 1u64..1_000_000_000, 1 => any::<u64>()]),
        algorithm in any_algorithm(),
        latencies in proptest::collection::vec(prop_oneof![0u64..2_000, Just(3_600_000)], 1..12),
    ) {
        let (initial_limit, min_limit, max_limit) = limits;
        let cfg = {
            let mut c = ConcurrencyConfig::default();
            c.initial_limit = initial_limit;
            c.min_limit = min_limit;
            c.max_limit = max_limit;
            c.max_wait = max_wait.map(Duration::from_nanos);
            c.algorithm = algorithm;
            c
        };
        if let Err(err) = cfg.validate() {
            prop_assert!(!err.field().is_empty());
            return Ok(());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let layer = ConcurrencyLimitLayer::from_config(&cfg).unwrap();
            let limiter = layer.handle().clone();
            let mut svc = layer.layer(Upstream::new());
            let calls: Vec<_> = latencies
                .iter()
                .map(|ms| tokio::spawn(svc.call(Fault::After(Duration::from_millis(*ms)))))
                .collect();
            for call in calls {
                let _ = call.await.unwrap();
            }
            // One more that the caller gives up on.
            let hung = svc.call(Fault::Never);
            let _ = tokio::time::timeout(Duration::from_secs(1), hung).await;
            let snap = limiter.snapshot();
            prop_assert_eq!((snap.in_flight, snap.waiting), (0, 0));
            prop_assert!(snap.min_limit <= snap.limit && snap.limit <= snap.max_limit, "{:?}", snap);
            Ok(())
        })?;
    }
}
