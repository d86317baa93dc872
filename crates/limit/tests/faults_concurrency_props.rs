//! Property tests of the concurrency limiter's fault handling: response futures dropped at
//! any point leak no permit, and any config, however extreme, is refused with a typed error
//! or builds a limiter that never panics and gives every permit back.

mod faults_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use faults_support::concurrency::{assert_unwedged, configs};
use faults_support::{Fault, Upstream};
use proptest::prelude::*;
use tower::Service;
use tower_layer::Layer;
use tower_prism_limit::concurrency::{
    AimdConfig, ConcurrencyConfig, ConcurrencyLimitLayer, GradientConfig, LimitAlgorithm,
};

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
