//! The adaptive concurrency limits with paused time: AIMD and gradient moving the limit with
//! failures and latency within its bounds, the classifier deciding what a failure is, hot
//! reconfiguration, and the metrics following the limit.

mod common;

use std::time::Duration;

use common::concurrency::{concurrency_error, fixed, one_permit_waiting, Gate};
use tokio::sync::oneshot;
use tokio::time::sleep;
use tokio_test::{assert_pending, assert_ready, task};
use tower::BoxError;
use tower::{service_fn, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::Outcome;
use tower_prism_limit::concurrency::{
    AimdConfig, ConcurrencyConfig, ConcurrencyLimitLayer, GradientConfig,
};
use tower_prism_limit::Error;

/// A request for the sleeping service: how long the call takes and whether it fails.
#[derive(Clone, Copy)]
struct Job {
    delay: Duration,
    fail: bool,
}

fn job(ms: u64, fail: bool) -> Job {
    Job {
        delay: Duration::from_millis(ms),
        fail,
    }
}

/// Runs `n` copies of `job` at once through `svc`; returns (ok, failed, rejected).
async fn batch<S>(svc: &S, n: u32, job: Job) -> (u32, u32, u32)
where
    S: Service<Job, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    let mut handles = Vec::new();
    for _ in 0..n {
        let mut svc = svc.clone();
        let fut = svc.ready().await.unwrap().call(job);
        handles.push(tokio::spawn(fut));
    }
    let (mut ok, mut failed, mut rejected) = (0, 0, 0);
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if e.is::<Error>() => rejected += 1,
            Err(_) => failed += 1,
        }
    }
    (ok, failed, rejected)
}

fn sleeper() -> impl Service<Job, Response = (), Error = &'static str, Future: Send> + Clone + Send
{
    service_fn(|job: Job| async move {
        sleep(job.delay).await;
        if job.fail {
            Err("boom")
        } else {
            Ok(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn aimd_shrinks_on_failures_and_grows_while_healthy_within_bounds() {
    let layer = ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .initial_limit(8)
            .min_limit(2)
            .max_limit(12)
            .algorithm({
                let mut c = AimdConfig::default();
                c.backoff_ratio = 0.5;
                c
            })
            .build()
            .unwrap(),
    )
    .unwrap();
    let limiter = layer.handle().clone();
    let svc = layer.layer(sleeper());

    assert_eq!(batch(&svc, 8, job(10, true)).await, (0, 8, 0));
    assert_eq!(
        limiter.snapshot().limit,
        2,
        "8 failures halve 8 down to the floor"
    );

    let mut seen = vec![limiter.snapshot().limit];
    for _ in 0..10 {
        let limit = limiter.snapshot().limit;
        let (ok, failed, rejected) = batch(&svc, limit, job(10, false)).await;
        assert_eq!((ok, failed, rejected), (limit, 0, 0));
        seen.push(limiter.snapshot().limit);
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), 12, "{seen:?}");
    assert!(seen.iter().all(|l| (2..=12).contains(l)), "{seen:?}");

    // More than the limit at once: the excess is rejected, the rest succeed.
    assert_eq!(batch(&svc, 15, job(10, false)).await, (12, 0, 3));
    assert_eq!(limiter.snapshot().limit, 12);
    assert_eq!(limiter.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn aimd_treats_slow_calls_as_overload() {
    let layer = ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .initial_limit(10)
            .min_limit(1)
            .max_limit(10)
            .algorithm({
                let mut c = AimdConfig::default();
                c.backoff_ratio = 0.5;
                c.latency_threshold = Some(Duration::from_millis(50));
                c
            })
            .build()
            .unwrap(),
    )
    .unwrap();
    let limiter = layer.handle().clone();
    let svc = layer.layer(sleeper());
    batch(&svc, 1, job(80, false)).await;
    assert_eq!(limiter.snapshot().limit, 5);
    // Calls at the threshold, using the whole limit, are healthy and raise it.
    assert_eq!(batch(&svc, 5, job(50, false)).await, (5, 0, 0));
    assert!(limiter.snapshot().limit > 5, "{:?}", limiter.snapshot());
}

#[tokio::test(start_paused = true)]
async fn gradient_lowers_the_limit_when_latency_rises_and_recovers() {
    let layer = ConcurrencyLimitLayer::from_config(
        &ConcurrencyConfig::builder()
            .initial_limit(20)
            .min_limit(4)
            .max_limit(50)
            .algorithm(GradientConfig::default())
            .build()
            .unwrap(),
    )
    .unwrap();
    let limiter = layer.handle().clone();
    let svc = layer.layer(sleeper());
    for _ in 0..10 {
        let limit = limiter.snapshot().limit;
        batch(&svc, limit, job(20, false)).await;
    }
    let healthy = limiter.snapshot().limit;
    assert!(
        healthy > 20,
        "steady latency at full use probes upwards: {healthy}"
    );
    for _ in 0..2 {
        let limit = limiter.snapshot().limit;
        batch(&svc, limit, job(200, false)).await;
    }
    let slow = limiter.snapshot().limit;
    assert!(
        slow < healthy / 2,
        "10x latency cuts the limit: {healthy} -> {slow}"
    );
    assert!(slow >= 4);
    for _ in 0..20 {
        let limit = limiter.snapshot().limit;
        batch(&svc, limit, job(20, false)).await;
    }
    let recovered = limiter.snapshot().limit;
    assert!(recovered > slow, "recovers: {slow} -> {recovered}");
    assert!(recovered <= 50);
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_what_a_failure_is() {
    let inner = service_fn(|code: u16| async move { Ok::<u16, &'static str>(code) });
    let layer = ConcurrencyLimitLayer::builder(
        ConcurrencyConfig::builder()
            .initial_limit(10)
            .min_limit(1)
            .max_limit(10)
            .algorithm({
                let mut c = AimdConfig::default();
                c.backoff_ratio = 0.5;
                c
            })
            .build()
            .unwrap(),
    )
    .classify(|r: Result<&u16, &&'static str>| match r {
        Ok(code) if *code >= 500 => Outcome::RETRYABLE,
        Ok(code) if *code == 401 => Outcome::Fatal,
        _ => Outcome::Success,
    })
    .build()
    .unwrap();
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(inner);
    assert_eq!(svc.ready().await.unwrap().call(503).await.unwrap(), 503);
    assert_eq!(
        limiter.snapshot().limit,
        5,
        "an Ok(503) counts as a failure"
    );
    svc.ready().await.unwrap().call(401).await.unwrap();
    assert_eq!(limiter.snapshot().limit, 5, "fatal says nothing about load");
}

#[tokio::test(start_paused = true)]
async fn metrics_follow_the_limit_in_flight_and_rejections() {
    let capture = tower_prism_testkit::metrics::Capture::default();
    let layer = metrics::with_local_recorder(&capture, || {
        ConcurrencyLimitLayer::builder(
            ConcurrencyConfig::builder()
                .initial_limit(10)
                .min_limit(1)
                .max_limit(10)
                .algorithm({
                    let mut c = AimdConfig::default();
                    c.backoff_ratio = 0.5;
                    c
                })
                .build()
                .unwrap(),
        )
        .name("api")
        .build()
        .unwrap()
    });
    let limit = "prism_ratelimit_concurrency_limit{name=api}";
    let in_flight = "prism_ratelimit_in_flight{name=api}";
    let rejected = "prism_ratelimit_rejected_total{name=api,reason=concurrency}";
    assert_eq!(capture.gauge(limit), 10.0);

    let svc = layer.layer(sleeper());
    let mut one = svc.clone();
    let call = one.ready().await.unwrap().call(job(10, true));
    assert_eq!(capture.gauge(in_flight), 1.0);
    assert!(call.await.is_err());
    assert_eq!(capture.gauge(in_flight), 0.0);
    assert_eq!(capture.gauge(limit), 5.0, "the failure halved the limit");

    assert_eq!(batch(&svc, 7, job(10, false)).await, (5, 0, 2));
    assert_eq!(capture.counter(rejected), 2);
    assert_eq!(
        capture.gauge(limit),
        f64::from(layer.handle().snapshot().limit)
    );
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_to_the_running_limiter() {
    let gate = Gate::default();
    let layer = fixed(4);
    let limiter = layer.handle().clone();
    let mut svc = layer.layer(gate.clone());
    let mut held = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = oneshot::channel();
        let mut f = task::spawn(svc.ready().await.unwrap().call(rx));
        assert_pending!(f.poll());
        held.push((tx, f));
    }

    let bad = {
        let mut c = ConcurrencyConfig::default();
        c.min_limit = 0;
        c
    };
    assert_eq!(limiter.reconfigure(&bad).unwrap_err().field(), "min_limit");
    assert_eq!(limiter.snapshot().limit, 4, "a bad config changes nothing");

    limiter.reconfigure(&ConcurrencyConfig::fixed(1)).unwrap();
    let snap = limiter.snapshot();
    assert_eq!(
        (snap.limit, snap.in_flight),
        (1, 3),
        "holders keep their permits"
    );
    let (_tx, rx) = oneshot::channel();
    let err = svc.ready().await.unwrap().call(rx).await.unwrap_err();
    assert_eq!(
        concurrency_error(&err),
        &Error::ConcurrencyLimited { limit: 1 }
    );

    // Finishing the holders drains in-flight below the new limit.
    for (tx, mut f) in held {
        tx.send(Ok(0)).unwrap();
        assert_ready!(f.poll()).unwrap();
    }
    assert_eq!(limiter.snapshot().in_flight, 0);
    let (tx, rx) = oneshot::channel();
    let mut f = task::spawn(svc.ready().await.unwrap().call(rx));
    assert_pending!(f.poll());
    tx.send(Ok(9)).unwrap();
    assert_eq!(assert_ready!(f.poll()).unwrap(), 9);

    // max_wait can be switched on at run time.
    let mut with_wait = ConcurrencyConfig::fixed(1);
    with_wait.max_wait = Some(Duration::from_millis(5));
    limiter.reconfigure(&with_wait).unwrap();
    assert_eq!(limiter.config(), with_wait);
    assert_eq!(limiter.max_wait(), Some(Duration::from_millis(5)));
}

#[tokio::test(start_paused = true)]
async fn raising_the_limit_wakes_waiters() {
    let (gate, limiter, mut svc) = one_permit_waiting(Duration::from_secs(1));
    let (_tx1, rx1) = oneshot::channel();
    let mut first = task::spawn(svc.ready().await.unwrap().call(rx1));
    assert_pending!(first.poll());
    let (_tx2, rx2) = oneshot::channel();
    let mut second = task::spawn(svc.ready().await.unwrap().call(rx2));
    assert_pending!(second.poll());

    let mut wider = ConcurrencyConfig::fixed(2);
    wider.max_wait = Some(Duration::from_secs(1));
    limiter.reconfigure(&wider).unwrap();
    assert!(second.is_woken());
    assert_pending!(second.poll());
    assert_eq!(gate.active(), 2);
}
