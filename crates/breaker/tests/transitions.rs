//! Every breaker transition (closed to open, open to half-open, half-open to closed or
//! open), driven through the tower service with paused time. Forcing, reconfiguring and
//! observing a breaker is in `control.rs`.

mod common;

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{base, call, make, rejection, run, trip, Req};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready, task};
use tower::{Layer, Service, ServiceExt};
use tower_prism_breaker::{State, Window};

#[tokio::test(start_paused = true)]
async fn failure_rate_opens_a_count_window_and_minimum_calls_holds_it() {
    let (mut svc, _) = make(base());
    // three failures: rate 1.0 but fewer than minimum_calls
    run(&mut svc, &[Req::Fail, Req::Fail, Req::Fail]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    // a success: 3 of 4 failed
    run(&mut svc, &[Req::Ok]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Open);

    // below the threshold the window slides without tripping: 1 of 4, then 2 of 4
    let (mut svc, _) = make(base());
    run(&mut svc, &[Req::Ok, Req::Ok, Req::Ok, Req::Fail]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    assert_eq!(svc.handle().unwrap().snapshot().failure_rate, 0.25);
    run(&mut svc, &[Req::Ok]).await; // window: ok ok fail ok
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    run(&mut svc, &[Req::Fail]).await; // window: ok fail ok fail
    assert_eq!(svc.handle().unwrap().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_opens_a_time_window_and_old_calls_expire() {
    let (mut svc, _) = make(
        base()
            .window(Window::Time {
                duration: Duration::from_secs(1),
                buckets: 10,
            })
            .minimum_calls(3),
    );
    run(&mut svc, &[Req::Fail]).await;
    advance(Duration::from_millis(100)).await;
    run(&mut svc, &[Req::Fail]).await;
    assert_eq!(svc.handle().unwrap().snapshot().calls, 2);
    // both failures leave the 1 s window
    advance(Duration::from_millis(1_050)).await;
    assert_eq!(svc.handle().unwrap().snapshot().calls, 0);
    run(&mut svc, &[Req::Ok, Req::Fail]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    run(&mut svc, &[Req::Fail]).await; // 2 of 3 in the window
    assert_eq!(svc.handle().unwrap().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_opens() {
    let (mut svc, _) = make(
        base()
            .slow_call_duration(Duration::from_millis(100))
            .slow_call_rate_threshold(0.5),
    );
    run(&mut svc, &[Req::Slow(200), Req::Ok, Req::Slow(100)]).await; // 100 ms is not slower
    let snap = svc.handle().unwrap().snapshot();
    assert_eq!((snap.calls, snap.slow_calls, snap.failures), (3, 1, 0));
    assert_eq!(snap.state, State::Closed);
    run(&mut svc, &[Req::Slow(101)]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_regardless_of_the_window() {
    let (mut svc, _) = make(
        base()
            .window(Window::Count { size: 100 })
            .minimum_calls(100)
            .consecutive_failures(3),
    );
    run(
        &mut svc,
        &[Req::Fail, Req::Fail, Req::Ok, Req::Fail, Req::Fail],
    )
    .await;
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    assert_eq!(svc.handle().unwrap().snapshot().consecutive_failures, 2);
    run(&mut svc, &[Req::Fail]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_fast_without_calling_the_inner_service() {
    let (mut svc, calls) = make(base());
    trip(&mut svc).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let result = call(&mut svc, Req::Ok).await;
    assert_eq!(rejection(&result), Some(Duration::from_secs(10)));
    advance(Duration::from_secs(4)).await;
    let result = call(&mut svc, Req::Ok).await;
    assert_eq!(rejection(&result), Some(Duration::from_secs(6)));
    let err = result.unwrap_err();
    assert!(err.to_string().contains("circuit open"), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "the inner service was called"
    );
    // the rejection comes from the future: the service stays ready
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
}

#[tokio::test(start_paused = true)]
async fn open_becomes_half_open_after_the_wait_and_a_good_probe_closes() {
    let (mut svc, calls) = make(base());
    trip(&mut svc).await;
    advance(Duration::from_millis(9_999)).await;
    assert!(rejection(&call(&mut svc, Req::Ok).await).is_some());
    advance(Duration::from_millis(1)).await;
    let mut probe = task::spawn(svc.ready().await.unwrap().call(Req::Slow(50)));
    assert_pending!(probe.poll());
    assert_eq!(svc.handle().unwrap().state(), State::HalfOpen);
    assert_eq!(svc.handle().unwrap().snapshot().probes_admitted, 1);
    // while the probe runs, other calls are rejected
    assert!(rejection(&call(&mut svc, Req::Ok).await).is_some());
    advance(Duration::from_millis(50)).await;
    assert_ready!(probe.poll()).unwrap();
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    let snap = svc.handle().unwrap().snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (0, 0),
        "closing starts a fresh window"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    run(&mut svc, &[Req::Ok]).await;
}

#[tokio::test(start_paused = true)]
async fn exactly_n_probes_are_admitted_concurrently() {
    let (mut svc, calls) = make(base().permitted_calls_in_half_open(3));
    trip(&mut svc).await;
    advance(Duration::from_secs(10)).await;
    let mut probes: Vec<_> = (0..5)
        .map(|_| task::spawn(svc.call(Req::Slow(10))))
        .collect();
    let mut rejected = 0;
    for p in &mut probes {
        match p.poll() {
            Poll::Pending => {}
            Poll::Ready(result) => {
                assert!(rejection(&result).is_some());
                rejected += 1;
            }
        }
    }
    assert_eq!(rejected, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 4 + 3);
    assert_eq!(svc.handle().unwrap().snapshot().probes_admitted, 3);
    advance(Duration::from_millis(10)).await;
    for p in probes.iter_mut().take(3) {
        assert_ready!(p.poll()).unwrap();
    }
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn probe_results_decide_by_the_failure_rate() {
    // 2 probes, 1 failure: rate 0.5 >= 0.5 opens again
    let (mut svc, _) = make(base().permitted_calls_in_half_open(2));
    trip(&mut svc).await;
    advance(Duration::from_secs(10)).await;
    let mut a = task::spawn(svc.call(Req::Slow(5)));
    let mut b = task::spawn(svc.call(Req::SlowFail(5)));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    advance(Duration::from_millis(5)).await;
    assert_ready!(a.poll()).unwrap();
    assert_eq!(
        svc.handle().unwrap().state(),
        State::HalfOpen,
        "waits for every probe"
    );
    assert_eq!(svc.handle().unwrap().snapshot().calls, 1);
    assert!(assert_ready!(b.poll()).is_err());
    assert_eq!(svc.handle().unwrap().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn failed_probes_grow_the_wait_up_to_the_cap() {
    let (mut svc, _) = make(
        base()
            .wait_duration(Duration::from_secs(1))
            .exponential_backoff(2.0, Duration::from_secs(3)),
    );
    trip(&mut svc).await;
    let mut waits = Vec::new();
    for _ in 0..3 {
        let wait = rejection(&call(&mut svc, Req::Ok).await).unwrap();
        waits.push(wait);
        advance(wait).await;
        run(&mut svc, &[Req::Fail]).await; // the probe fails
        assert_eq!(svc.handle().unwrap().state(), State::Open);
    }
    let last = rejection(&call(&mut svc, Req::Ok).await).unwrap();
    waits.push(last);
    assert_eq!(
        waits,
        [1, 2, 3, 3].map(Duration::from_secs),
        "1 s, doubled, then capped"
    );
    // a good probe closes and the wait starts over
    advance(last).await;
    run(&mut svc, &[Req::Ok]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    trip(&mut svc).await;
    assert_eq!(
        rejection(&call(&mut svc, Req::Ok).await),
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_permit_and_is_not_a_failure() {
    let (mut svc, calls) = make(base());
    trip(&mut svc).await;
    advance(Duration::from_secs(10)).await;
    let mut probe = task::spawn(svc.call(Req::SlowFail(100)));
    assert_pending!(probe.poll());
    assert!(rejection(&call(&mut svc, Req::Ok).await).is_some());
    drop(probe);
    let snap = svc.handle().unwrap().snapshot();
    assert_eq!(snap.state, State::HalfOpen);
    assert_eq!((snap.probes_admitted, snap.calls, snap.failures), (0, 0, 0));
    run(&mut svc, &[Req::Ok]).await; // the freed permit
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 6);

    // in the closed state a dropped call is not counted either
    let mut slow = task::spawn(svc.call(Req::SlowFail(100)));
    assert_pending!(slow.poll());
    drop(slow);
    assert_eq!(svc.handle().unwrap().snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn fatal_and_not_retryable_count_as_configured() {
    // defaults: not-retryable counts; Fatal is ignored (resilience4j's ignoreExceptions):
    // neither a failure nor a success, so it neither trips nor dilutes the rate
    let (mut svc, _) = make(base());
    run(&mut svc, &[Req::Fatal; 4]).await;
    let snap = svc.handle().unwrap().snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.failures),
        (State::Closed, 0, 0)
    );
    run(&mut svc, &[Req::NotRetryable, Req::Ok, Req::NotRetryable]).await;
    run(&mut svc, &[Req::Fatal; 3]).await;
    assert_eq!(svc.handle().unwrap().snapshot().calls, 3);
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    run(&mut svc, &[Req::Ok]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Open, "2 of 4 counted");

    let (mut svc, _) = make(base().count_fatal(true).count_not_retryable(false));
    run(&mut svc, &[Req::NotRetryable; 4]).await;
    let snap = svc.handle().unwrap().snapshot();
    assert_eq!((snap.calls, snap.failures), (0, 0));
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    run(&mut svc, &[Req::Fatal, Req::Fatal, Req::Ok, Req::Ok]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn an_ignored_probe_gives_its_slot_to_the_next_call() {
    let (mut svc, _) = make(base());
    trip(&mut svc).await;
    advance(Duration::from_secs(10)).await;
    // a caller's fault says nothing of the upstream: it does not close the circuit
    run(&mut svc, &[Req::Fatal, Req::Fatal]).await;
    let snap = svc.handle().unwrap().snapshot();
    assert_eq!(snap.state, State::HalfOpen);
    assert_eq!((snap.probes_admitted, snap.calls), (0, 0));
    run(&mut svc, &[Req::Ok]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_rate_equal_to_its_threshold_trips_whatever_the_threshold() {
    // 0.55 * 100 is 55.00000000000001 in floating point: 55 failures of 100 missed it
    for (threshold, size, failures) in [(0.55, 100, 55), (0.07, 100, 7), (0.14, 50, 7)] {
        let config = base()
            .window(Window::Count { size })
            .minimum_calls(size)
            .failure_rate_threshold(threshold);
        let (mut svc, _) = make(config);
        let mut calls = vec![Req::Ok; (size - failures) as usize];
        calls.extend(vec![Req::Fail; failures as usize - 1]);
        run(&mut svc, &calls).await;
        assert_eq!(svc.handle().unwrap().state(), State::Closed, "{threshold}");
        run(&mut svc, &[Req::Fail]).await;
        assert_eq!(svc.handle().unwrap().state(), State::Open, "{threshold}");
    }
    // and the slow-call rate: 28 slow of 50 at 0.56
    let config = base()
        .window(Window::Count { size: 50 })
        .minimum_calls(50)
        .slow_call_rate_threshold(0.56)
        .slow_call_duration(Duration::from_millis(100));
    let (mut svc, _) = make(config);
    run(&mut svc, &[Req::Ok; 22]).await;
    run(&mut svc, &[Req::Slow(200); 27]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    run(&mut svc, &[Req::Slow(200)]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn minimum_calls_over_a_count_window_is_capped_at_its_size() {
    // resilience4j's rule: shrinking only the window (minimum_calls keeps its default, 20)
    // is a working config, not an error
    let config = tower_prism_breaker::BreakerConfig::builder()
        .window(Window::Count { size: 4 })
        .build()
        .unwrap();
    assert_eq!(config.minimum_calls, 4);
    // a file's config is run with the capped value too
    let mut from_file = config.clone();
    from_file.minimum_calls = 20;
    from_file.validate().unwrap();
    assert_eq!(from_file.effective_minimum_calls(), 4);
    let mut svc = common::layer(from_file).layer(common::Upstream {
        calls: Default::default(),
    });
    run(&mut svc, &[Req::Fail, Req::Fail, Req::Ok, Req::Ok]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_threshold_under_a_millionth_still_needs_a_failure() {
    // thresholds are compared in millionths: one rounding to 0 would trip on successes
    let (mut svc, _) = make(base().failure_rate_threshold(1e-9));
    run(&mut svc, &[Req::Ok; 4]).await;
    assert_eq!(svc.handle().unwrap().state(), State::Closed);
    run(&mut svc, &[Req::Fail]).await;
    assert_eq!(
        svc.handle().unwrap().state(),
        State::Open,
        "one failure is over it"
    );
    advance(Duration::from_secs(10)).await;
    run(&mut svc, &[Req::Ok]).await;
    assert_eq!(
        svc.handle().unwrap().state(),
        State::Closed,
        "a good probe closes"
    );
}
