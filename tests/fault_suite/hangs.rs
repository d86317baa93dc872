//! The whole stack, in the `Generic` and `.http()` profiles, over endpoints that never
//! answer or answer after an hour (paused time). Calls that hang are cut by the retry
//! stage's attempt timeout or dropped by the caller; either way every permit, probe, queue
//! slot and in-flight count comes back, and later healthy calls are answered.

use std::time::Duration;

use tower::{BoxError, Service, ServiceExt};
use tower_prism::breaker::State;
use tower_prism::limit::concurrency::ConcurrencyConfig;
use tower_prism::retry::{Backoff, RetryConfig};
use tower_prism::{Error, ErrorKind};

use crate::support::flavor::{Flavor, GenericFlavor, HttpFlavor};
use crate::support::rig::{Rig, Stack};
use crate::support::{every_stage_policy, Fault};

const HOUR: Duration = Duration::from_secs(3600);

/// Every stage, each attempt cut after a second.
fn with_attempt_timeout<F: Flavor>() -> Rig<F>
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    let mut policy = every_stage_policy();
    policy.retry = Some(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::fixed(Duration::from_millis(10)))
            .attempt_timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    Rig::with(F::builder().policy(policy))
}

/// An endpoint that never answers: each attempt times out, the call fails with a typed
/// timeout after the last one, the hung inner futures are dropped, and enough such calls
/// open the breaker, which later closes again.
async fn a_hung_endpoint_is_cut_by_the_attempt_timeout<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    let rig = with_attempt_timeout::<F>();
    rig.script.reset(Fault::Hang);
    let started = tokio::time::Instant::now();
    let error = rig
        .call()
        .await
        .expect("no panic")
        .expect_err("a hung call fails");
    let error = Error::from_box(error);
    // every attempt ran out of time: a timeout (504), not a generic exhaustion (502)
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(4),
        "three attempts of a second each, two short backoffs: {took:?}"
    );
    assert_eq!(rig.script.calls(), 3);
    rig.assert_quiet("after a call cut by the attempt timeout");

    for _ in 0..3 {
        assert!(rig.call().await.expect("no panic").is_err());
    }
    assert_eq!(
        rig.breaker_state(),
        State::Open,
        "four timed-out calls trip it"
    );
    rig.assert_quiet("with the breaker open");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    rig.assert_healthy(5, "after the hang").await;
}

#[tokio::test(start_paused = true)]
async fn generic_a_hung_endpoint_is_cut_by_the_attempt_timeout() {
    a_hung_endpoint_is_cut_by_the_attempt_timeout::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_a_hung_endpoint_is_cut_by_the_attempt_timeout() {
    a_hung_endpoint_is_cut_by_the_attempt_timeout::<HttpFlavor>().await;
}

/// Without an attempt timeout, hung calls hold their concurrency permits: a fourth call
/// waits its `max_wait` and is refused with a typed error; when the caller gives up on the
/// hung calls (drops them), every permit and in-flight count comes back, including a
/// half-open probe that hung.
async fn hung_calls_dropped_by_the_caller_give_everything_back<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
    F::Req: Send + 'static,
    F::Res: Send + 'static,
    <Stack<F> as Service<F::Req>>::Future: Send + 'static,
    Stack<F>: Send + 'static,
{
    let rig = Rig::<F>::new();
    rig.script.reset(Fault::Hang);
    let hung: Vec<_> = (0..3)
        .map(|_| tokio::spawn(rig.service.clone().oneshot(F::request())))
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let snapshot = rig.layer.snapshot().concurrency_limit.unwrap();
    assert_eq!(snapshot.in_flight, 3, "three hung calls hold every permit");
    let in_flight: u64 = rig
        .handle
        .snapshot()
        .endpoints
        .iter()
        .map(|e| e.in_flight)
        .sum();
    assert_eq!(in_flight, 3);

    let refused = rig.call().await.expect("no panic").expect_err("refused");
    let refused = Error::from_box(refused);
    assert_eq!(refused.kind(), ErrorKind::ConcurrencyLimited, "{refused}");

    // An hour later the calls still hang; the caller gives up on them.
    tokio::time::sleep(HOUR).await;
    for call in &hung {
        assert!(!call.is_finished());
    }
    for call in hung {
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
    }
    rig.assert_quiet("after the hung calls were dropped");
    rig.assert_healthy(5, "after the hung calls").await;

    // A half-open probe that hangs and is dropped gives its probe back.
    rig.trip_and_wait().await;
    rig.script.reset(Fault::Hang);
    let probe = tokio::time::timeout(Duration::from_secs(5), rig.call()).await;
    assert!(probe.is_err(), "the probe hung");
    assert_eq!(rig.breaker_state(), State::HalfOpen);
    rig.assert_quiet("after a hung probe was dropped");
    rig.assert_healthy(5, "after the hung probe").await;
}

#[tokio::test(start_paused = true)]
async fn generic_hung_calls_dropped_by_the_caller_give_everything_back() {
    hung_calls_dropped_by_the_caller_give_everything_back::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_hung_calls_dropped_by_the_caller_give_everything_back() {
    hung_calls_dropped_by_the_caller_give_everything_back::<HttpFlavor>().await;
}

/// An answer after an hour is a (slow) success for every stage: the call is answered, the
/// breaker counts it as one slow call and stays closed, the stack is quiet after it, and
/// calls made while it ran went through the other permits.
async fn an_answer_after_an_hour_is_a_slow_success<F: Flavor>()
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
    F::Req: Send + 'static,
    F::Res: Send + 'static,
    <Stack<F> as Service<F::Req>>::Future: Send + 'static,
    Stack<F>: Send + 'static,
{
    let rig = Rig::<F>::new();
    rig.script.then([Fault::Slow(HOUR)]);
    let slow = tokio::spawn(rig.service.clone().oneshot(F::request()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rig.layer.snapshot().concurrency_limit.unwrap().in_flight, 1);
    for _ in 0..5 {
        assert!(F::answered(&rig.call().await.expect("no panic")));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!slow.is_finished());
    let answer = slow.await.expect("no panic");
    assert!(F::answered(&answer), "answered after an hour");
    let breaker = rig.layer.snapshot().circuit_breaker.unwrap();
    assert_eq!(
        (breaker.state, breaker.calls, breaker.slow_calls),
        (State::Closed, 6, 1),
        "{breaker:?}"
    );
    rig.assert_quiet("after an hour-long call");
    rig.assert_healthy(5, "after an hour-long call").await;
}

#[tokio::test(start_paused = true)]
async fn generic_an_answer_after_an_hour_is_a_slow_success() {
    an_answer_after_an_hour_is_a_slow_success::<GenericFlavor>().await;
}

#[tokio::test(start_paused = true)]
async fn http_an_answer_after_an_hour_is_a_slow_success() {
    an_answer_after_an_hour_is_a_slow_success::<HttpFlavor>().await;
}

/// With the adaptive concurrency limit (Vegas by default, AIMD and gradient), hour-long answers
/// may lower the limit, but never below its floor, and the limit grows back with fast
/// healthy calls: an hour-long latency sample does not wedge it.
async fn an_hour_long_sample_does_not_wedge_the_adaptive_limit(config: ConcurrencyConfig) {
    let mut policy = every_stage_policy();
    policy.concurrency_limit = Some(config.clone());
    // Four hour-long calls would trip the breaker on its slow-call rate: not the subject.
    policy.circuit_breaker = Some(
        crate::support::breaker_config()
            .to_builder()
            .slow_call_duration(2 * HOUR)
            .build()
            .unwrap(),
    );
    let rig = Rig::<GenericFlavor>::with(GenericFlavor::builder().policy(policy));
    let before = rig.layer.snapshot().concurrency_limit.unwrap();
    rig.script.then([Fault::Slow(HOUR); 4]);
    let slow: Vec<_> = (0..4)
        .map(|_| tokio::spawn(rig.service.clone().oneshot(7)))
        .collect();
    for call in slow {
        assert_eq!(call.await.unwrap().unwrap(), 7);
    }
    let after_hour = rig.layer.snapshot().concurrency_limit.unwrap();
    assert!(
        after_hour.limit >= config.min_limit,
        "{config:?}: {after_hour:?}"
    );
    rig.assert_quiet("after hour-long samples");
    // Fast healthy calls, as many in flight at once as the limit allows, for a while.
    for _ in 0..200 {
        let limit = rig.layer.snapshot().concurrency_limit.unwrap().limit.min(4);
        let calls: Vec<_> = (0..limit)
            .map(|_| tokio::spawn(rig.service.clone().oneshot(7)))
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), 7);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let recovered = rig.layer.snapshot().concurrency_limit.unwrap();
    assert!(
        after_hour.limit >= before.limit || recovered.limit > after_hour.limit,
        "{config:?}: a limit lowered by the hour-long samples grows back: \
         before {before:?}, after the hour {after_hour:?}, later {recovered:?}"
    );
    rig.assert_quiet("after the recovery");
}

#[tokio::test(start_paused = true)]
async fn an_hour_long_sample_does_not_wedge_the_aimd_limit() {
    let config: ConcurrencyConfig = toml::from_str(
        r#"
        initial_limit = 4
        min_limit = 1
        max_limit = 16
        [algorithm]
        kind = "aimd"
        latency_threshold = "1s"
        "#,
    )
    .unwrap();
    an_hour_long_sample_does_not_wedge_the_adaptive_limit(config).await;
}

#[tokio::test(start_paused = true)]
async fn an_hour_long_sample_does_not_wedge_the_gradient_limit() {
    let config: ConcurrencyConfig = toml::from_str(
        r#"
        initial_limit = 4
        min_limit = 1
        max_limit = 16
        [algorithm]
        kind = "gradient"
        "#,
    )
    .unwrap();
    an_hour_long_sample_does_not_wedge_the_adaptive_limit(config).await;
}

#[tokio::test(start_paused = true)]
async fn an_hour_long_sample_does_not_wedge_the_vegas_limit() {
    let config: ConcurrencyConfig = toml::from_str(
        r#"
        initial_limit = 4
        min_limit = 1
        max_limit = 16
        [algorithm]
        kind = "vegas"
        "#,
    )
    .unwrap();
    an_hour_long_sample_does_not_wedge_the_adaptive_limit(config).await;
}
