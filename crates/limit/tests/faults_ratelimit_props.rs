//! Property tests of the rate limiter's fault handling: response futures dropped at any
//! point leave no queue slot behind, and any config (plain or adaptive), however extreme, is
//! refused with a typed error or builds a limiter that never panics.

mod faults_support;

use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use faults_support::rate::{assert_unwedged, config, rate_limited};
use faults_support::{Fault, MS};
use proptest::prelude::*;
use tokio::time::{advance, Instant};
use tower::Service;
use tower_prism_core::{HealthSignal, Outcome};
use tower_prism_limit::rate::{AdaptiveConfig, RateLimitConfig, RateLimitLayer};
use tower_prism_limit::Error;

/// One step of the cancellation property test.
#[derive(Debug, Clone)]
enum Step {
    /// A new request of this priority: answered after this many ms (`None`: never).
    Call(u32, Option<u64>),
    /// Polls request `i` (mod the number of requests).
    Poll(usize),
    /// Drops request `i`, wherever it is: not yet polled, queued, admitted but waiting for
    /// the upstream to be ready, or in the upstream.
    Drop(usize),
    /// Lets this many ms pass.
    Advance(u64),
    /// Makes the upstream ready or not.
    Ready(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u32..3, proptest::option::weighted(0.8, 0u64..50))
            .prop_map(|(p, after)| Step::Call(p, after)),
        3 => any::<usize>().prop_map(Step::Poll),
        2 => any::<usize>().prop_map(Step::Drop),
        2 => (0u64..150).prop_map(Step::Advance),
        1 => any::<bool>().prop_map(Step::Ready),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Response futures dropped at random points leave no queue slot behind; while they
    /// live, the queue never holds more than its capacity and the upstream never sees more
    /// than the rate allows (burst + elapsed / interval); once all are gone the limiter
    /// serves requests on schedule.
    #[test]
    fn dropping_response_futures_anywhere_leaks_no_queue_slot(
        queue in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (limiter, upstream, mut svc) = rate_limited(&config(queue));
            let start = Instant::now();
            let mut requests = Vec::new();
            for step in steps {
                match step {
                    Step::Call(priority, after) => {
                        let fault = after.map_or(Fault::Never, |ms| Fault::After(Duration::from_millis(ms)));
                        requests.push(Some(tokio_test::task::spawn(svc.call((priority, fault)))));
                    }
                    Step::Poll(i) if !requests.is_empty() => {
                        let i = i % requests.len();
                        if let Some(request) = requests[i].as_mut() {
                            if request.poll().is_ready() {
                                requests[i] = None;
                            }
                        }
                    }
                    Step::Drop(i) if !requests.is_empty() => {
                        let i = i % requests.len();
                        requests[i] = None;
                    }
                    Step::Advance(ms) => advance(Duration::from_millis(ms)).await,
                    Step::Ready(ready) => upstream.ready.store(ready, Ordering::SeqCst),
                    _ => {}
                }
                let snap = limiter.snapshot();
                prop_assert!(snap.queued <= snap.queue_capacity, "{snap:?}");
                prop_assert!(snap.queued <= requests.iter().flatten().count(), "{snap:?}");
                let allowed = 2 + start.elapsed().as_millis() / 100;
                prop_assert!(upstream.calls() as u128 <= allowed, "{} calls", upstream.calls());
            }
            drop(requests);
            upstream.ready.store(true, Ordering::SeqCst);
            assert_unwedged(&limiter, &mut svc, queue).await;
            Ok(())
        })?;
    }

    /// Any config, however extreme, is refused with a typed error or builds a limiter that
    /// admits, refuses and queues without panicking, also across jumps of up to a year;
    /// every `retry_after` is within its documented cap.
    #[test]
    fn any_config_builds_a_limiter_that_never_panics(
        rate in prop_oneof![6 => 1u32..1000, 1 => Just(u32::MAX), 1 => any::<u32>()],
        period_nanos in prop_oneof![
            6 => 1_000_000u64..2_000_000_000,
            1 => Just(366 * 86_400 * 1_000_000_000),
            1 => any::<u64>(),
        ],
        burst in proptest::option::of(prop_oneof![6 => 1u32..100, 1 => Just(u32::MAX), 1 => any::<u32>()]),
        queue_size in prop_oneof![2 => Just(0usize), 4 => 1usize..8, 1 => Just(usize::MAX)],
        max_wait_nanos in prop_oneof![
            6 => 1u64..1_000_000_000,
            1 => Just(60_000_000_000),
            1 => any::<u64>(),
        ],
        jumps in proptest::collection::vec(prop_oneof![0u64..1_000, Just(u64::MAX / 1024)], 1..6),
    ) {
        let cfg = {
            let mut c = RateLimitConfig::new(rate, Duration::from_nanos(period_nanos));
            c.burst = burst;
            c.queue_size = queue_size;
            c.max_wait = (queue_size > 0).then(|| Duration::from_nanos(max_wait_nanos));
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
            let (limiter, _, mut svc) = rate_limited(&cfg);
            for nanos in jumps {
                // Up to about 200 days of paused time at once (u64::MAX / 1024 ns).
                advance(Duration::from_nanos(nanos)).await;
                let mut pending = Vec::new();
                for priority in 0..3 {
                    let mut request =
                        tokio_test::task::spawn(svc.call((priority, Fault::Answer)));
                    match request.poll() {
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(err)) => {
                            let err = err.downcast_ref::<Error>().expect("a limiter error");
                            if let Some(retry_after) = err.retry_after() {
                                prop_assert!(retry_after <= RateLimitConfig::MAX_RETRY_AFTER);
                            }
                        }
                        Poll::Pending => pending.push(request),
                    }
                }
                let _ = limiter.try_acquire(1);
                let _ = limiter.snapshot();
                drop(pending);
                prop_assert_eq!(limiter.snapshot().queued, 0);
            }
            Ok(())
        })?;
    }

    /// Any adaptive config, however extreme (rates from 10^-12 to 10^300 a second, steps of
    /// 10^300, intervals of centuries), is refused with a typed error or builds a limiter
    /// whose rate stays within its bounds through failures, an open circuit, recoveries and
    /// jumps of days, without panicking; every `retry_after` is within its cap.
    #[test]
    fn any_adaptive_config_keeps_the_rate_in_bounds_and_never_panics(
        rate in prop_oneof![6 => 1u32..1000, 1 => any::<u32>()],
        burst in prop_oneof![6 => 1u32..100, 1 => any::<u32>()],
        min_rate in prop_oneof![6 => 0.1f64..100.0, 1 => Just(1e-12), 1 => any::<f64>()],
        span in prop_oneof![6 => 1.0f64..1000.0, 1 => Just(1e300), 1 => any::<f64>()],
        interval_ms in prop_oneof![6 => 1u64..10_000, 1 => any::<u64>()],
        decrease_factor in prop_oneof![6 => 0.01f64..0.99, 1 => any::<f64>()],
        increase_step in prop_oneof![6 => 0.1f64..1000.0, 1 => Just(1e300), 1 => any::<f64>()],
        min_calls in prop_oneof![6 => 0u64..20, 1 => any::<u64>()],
        rounds in proptest::collection::vec((0u32..30, 0u32..30, any::<bool>(), prop_oneof![0u64..5_000, Just(86_400_000)]), 1..10),
    ) {
        let mut cfg = AdaptiveConfig::new(min_rate, min_rate * span);
        cfg.interval = Duration::from_millis(interval_ms);
        cfg.decrease_factor = decrease_factor;
        cfg.increase_step = increase_step;
        cfg.min_calls = min_calls;
        cfg.latency_threshold = Some(Duration::from_millis(100));
        let (low, high) = (cfg.min_rate, cfg.max_rate);
        let health = HealthSignal::new();
        let config = RateLimitConfig::builder()
            .rate(rate)
            .period(Duration::from_secs(1))
            .burst(burst)
            .adaptive(cfg)
            .build();
        let Ok(config) = config else {
            return Ok(());
        };
        let layer = RateLimitLayer::builder(config)
            .health(health.clone())
            .build()
            .expect("a valid config with a health signal");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let limiter = layer.handle().clone();
            for (successes, failures, open, jump_ms) in rounds {
                for _ in 0..successes {
                    health.record(Outcome::Success, 5 * MS);
                }
                for _ in 0..failures {
                    health.record(Outcome::RETRYABLE, 500 * MS);
                }
                health.set_circuit_open(open);
                advance(Duration::from_millis(jump_ms)).await;
                limiter.adapt();
                if let Err(err) = limiter.try_acquire(1) {
                    if let Some(retry_after) = err.retry_after() {
                        prop_assert!(retry_after <= RateLimitConfig::MAX_RETRY_AFTER);
                    }
                }
                let now = limiter.snapshot().rate_per_second;
                // Within the bounds (the bucket's whole-nanosecond spacing may round a rate
                // by a hair below the floor).
                prop_assert!(now >= low * (1.0 - 1e-9) && now <= high * (1.0 + 1e-9), "{now} outside [{low}, {high}]");
            }
            Ok(())
        })?;
    }
}
