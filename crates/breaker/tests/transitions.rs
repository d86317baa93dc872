//! Every breaker transition, driven through the tower service with paused time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{advance, sleep};
use tokio_test::{assert_pending, assert_ready, task};
use tower::BoxError;
use tower::{Layer, Service, ServiceExt};
use tower_prism_breaker::{
    BreakerConfig, BreakerConfigBuilder, CircuitBreaker, CircuitBreakerLayer,
    CircuitBreakerLayerBuilder, Error, State, Window,
};
use tower_prism_core::{HealthSignal, Outcome};

/// What the upstream does with a request.
#[derive(Debug, Clone, Copy)]
enum Req {
    Ok,
    Fail,
    NotRetryable,
    Fatal,
    /// Succeeds after this many milliseconds.
    Slow(u64),
    /// Fails after this many milliseconds.
    SlowFail(u64),
}

#[derive(Debug)]
enum Fail {
    Retryable,
    NotRetryable,
    Fatal,
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for Fail {}

#[derive(Clone)]
struct Upstream {
    calls: Arc<AtomicUsize>,
}

impl Service<Req> for Upstream {
    type Response = ();
    type Error = Fail;
    type Future = Pin<Box<dyn Future<Output = Result<(), Fail>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Fail>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match req {
                Req::Ok => Ok(()),
                Req::Fail => Err(Fail::Retryable),
                Req::NotRetryable => Err(Fail::NotRetryable),
                Req::Fatal => Err(Fail::Fatal),
                Req::Slow(ms) => {
                    sleep(Duration::from_millis(ms)).await;
                    Ok(())
                }
                Req::SlowFail(ms) => {
                    sleep(Duration::from_millis(ms)).await;
                    Err(Fail::Retryable)
                }
            }
        })
    }
}

fn classify(result: Result<&(), &Fail>) -> Outcome {
    match result {
        Ok(()) => Outcome::Success,
        Err(Fail::Retryable) => Outcome::RETRYABLE,
        Err(Fail::NotRetryable) => Outcome::NOT_RETRYABLE,
        Err(Fail::Fatal) => Outcome::Fatal,
    }
}

type Classifier = fn(Result<&(), &Fail>) -> Outcome;
type Svc = CircuitBreaker<Upstream, Classifier>;

fn builder(config: BreakerConfig) -> CircuitBreakerLayerBuilder<Classifier> {
    CircuitBreakerLayer::builder(config).classify(classify as Classifier)
}

fn layer(config: BreakerConfig) -> CircuitBreakerLayer<Classifier> {
    builder(config).build().unwrap()
}

fn make(config: BreakerConfigBuilder) -> (Svc, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(config.build().unwrap()).layer(Upstream {
        calls: calls.clone(),
    });
    (svc, calls)
}

fn base() -> BreakerConfigBuilder {
    BreakerConfig::builder()
        .window(Window::Count { size: 4 })
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .wait_duration(Duration::from_secs(10))
        .permitted_calls_in_half_open(1)
}

async fn call(svc: &mut Svc, req: Req) -> Result<(), BoxError> {
    svc.ready().await?.call(req).await
}

/// The `retry_after` of a rejection, or `None` for any other result.
fn rejection(result: &Result<(), BoxError>) -> Option<Duration> {
    match result {
        Err(e) => e.downcast_ref::<Error>().and_then(Error::retry_after),
        Ok(()) => None,
    }
}

async fn run(svc: &mut Svc, reqs: &[Req]) {
    for &req in reqs {
        let result = call(svc, req).await;
        assert_eq!(rejection(&result), None, "{req:?} was rejected");
    }
}

/// Trips a `base()` breaker open with four failures.
async fn trip(svc: &mut Svc) {
    run(svc, &[Req::Fail; 4]).await;
    assert_eq!(svc.handle().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_opens_a_count_window_and_minimum_calls_holds_it() {
    let (mut svc, _) = make(base());
    // three failures: rate 1.0 but fewer than minimum_calls
    run(&mut svc, &[Req::Fail, Req::Fail, Req::Fail]).await;
    assert_eq!(svc.handle().state(), State::Closed);
    // a success: 3 of 4 failed
    run(&mut svc, &[Req::Ok]).await;
    assert_eq!(svc.handle().state(), State::Open);

    // below the threshold the window slides without tripping: 1 of 4, then 2 of 4
    let (mut svc, _) = make(base());
    run(&mut svc, &[Req::Ok, Req::Ok, Req::Ok, Req::Fail]).await;
    assert_eq!(svc.handle().state(), State::Closed);
    assert_eq!(svc.handle().snapshot().failure_rate, 0.25);
    run(&mut svc, &[Req::Ok]).await; // window: ok ok fail ok
    assert_eq!(svc.handle().state(), State::Closed);
    run(&mut svc, &[Req::Fail]).await; // window: ok fail ok fail
    assert_eq!(svc.handle().state(), State::Open);
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
    assert_eq!(svc.handle().snapshot().calls, 2);
    // both failures leave the 1 s window
    advance(Duration::from_millis(1_050)).await;
    assert_eq!(svc.handle().snapshot().calls, 0);
    run(&mut svc, &[Req::Ok, Req::Fail]).await;
    assert_eq!(svc.handle().state(), State::Closed);
    run(&mut svc, &[Req::Fail]).await; // 2 of 3 in the window
    assert_eq!(svc.handle().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_opens() {
    let (mut svc, _) = make(
        base()
            .slow_call_duration(Duration::from_millis(100))
            .slow_call_rate_threshold(0.5),
    );
    run(&mut svc, &[Req::Slow(200), Req::Ok, Req::Slow(100)]).await; // 100 ms is not slower
    let snap = svc.handle().snapshot();
    assert_eq!((snap.calls, snap.slow_calls, snap.failures), (3, 1, 0));
    assert_eq!(snap.state, State::Closed);
    run(&mut svc, &[Req::Slow(101)]).await;
    assert_eq!(svc.handle().state(), State::Open);
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
    assert_eq!(svc.handle().state(), State::Closed);
    assert_eq!(svc.handle().snapshot().consecutive_failures, 2);
    run(&mut svc, &[Req::Fail]).await;
    assert_eq!(svc.handle().state(), State::Open);
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
    assert_eq!(svc.handle().state(), State::HalfOpen);
    assert_eq!(svc.handle().snapshot().probes_admitted, 1);
    // while the probe runs, other calls are rejected
    assert!(rejection(&call(&mut svc, Req::Ok).await).is_some());
    advance(Duration::from_millis(50)).await;
    assert_ready!(probe.poll()).unwrap();
    assert_eq!(svc.handle().state(), State::Closed);
    let snap = svc.handle().snapshot();
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
    assert_eq!(svc.handle().snapshot().probes_admitted, 3);
    advance(Duration::from_millis(10)).await;
    for p in probes.iter_mut().take(3) {
        assert_ready!(p.poll()).unwrap();
    }
    assert_eq!(svc.handle().state(), State::Closed);
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
        svc.handle().state(),
        State::HalfOpen,
        "waits for every probe"
    );
    assert_eq!(svc.handle().snapshot().calls, 1);
    assert!(assert_ready!(b.poll()).is_err());
    assert_eq!(svc.handle().state(), State::Open);
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
        assert_eq!(svc.handle().state(), State::Open);
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
    assert_eq!(svc.handle().state(), State::Closed);
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
    let snap = svc.handle().snapshot();
    assert_eq!(snap.state, State::HalfOpen);
    assert_eq!((snap.probes_admitted, snap.calls, snap.failures), (0, 0, 0));
    run(&mut svc, &[Req::Ok]).await; // the freed permit
    assert_eq!(svc.handle().state(), State::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 6);

    // in the closed state a dropped call is not counted either
    let mut slow = task::spawn(svc.call(Req::SlowFail(100)));
    assert_pending!(slow.poll());
    drop(slow);
    assert_eq!(svc.handle().snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn fatal_and_not_retryable_count_as_configured() {
    // defaults: Fatal does not count, not-retryable does
    let (mut svc, _) = make(base());
    run(&mut svc, &[Req::Fatal; 4]).await;
    let snap = svc.handle().snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.failures),
        (State::Closed, 4, 0)
    );
    run(&mut svc, &[Req::NotRetryable, Req::NotRetryable]).await;
    assert_eq!(svc.handle().state(), State::Open);

    let (mut svc, _) = make(base().count_fatal(true).count_not_retryable(false));
    run(&mut svc, &[Req::NotRetryable; 4]).await;
    assert_eq!(svc.handle().snapshot().failures, 0);
    assert_eq!(svc.handle().state(), State::Closed);
    run(&mut svc, &[Req::Fatal, Req::Fatal]).await;
    assert_eq!(svc.handle().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn force_open_disable_and_reset() {
    let (mut svc, calls) = make(base());
    let breaker = svc.handle().clone();
    breaker.force_open();
    assert_eq!(breaker.state(), State::ForcedOpen);
    advance(Duration::from_secs(3_600)).await;
    let result = call(&mut svc, Req::Ok).await;
    assert_eq!(rejection(&result), Some(Duration::from_secs(10)));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    breaker.disable();
    assert_eq!(breaker.state(), State::Disabled);
    run(&mut svc, &[Req::Fail; 10]).await;
    let snap = breaker.snapshot();
    assert_eq!((snap.state, snap.calls), (State::Disabled, 0));

    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    trip(&mut svc).await;
    breaker.reset();
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.retry_after),
        (State::Closed, 0, None)
    );
    run(&mut svc, &[Req::Ok]).await;
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer(base().build().unwrap());
    let upstream = Upstream {
        calls: calls.clone(),
    };
    let mut a = layer.layer(upstream.clone());
    let mut b = layer.clone().layer(upstream);
    let mut c = a.clone();
    assert!(a.handle().same_as(b.handle()) && a.handle().same_as(layer.handle()));
    run(&mut a, &[Req::Fail, Req::Fail]).await;
    run(&mut b, &[Req::Fail]).await;
    run(&mut c, &[Req::Fail]).await;
    assert_eq!(layer.handle().state(), State::Open);
    for svc in [&mut a, &mut b, &mut c] {
        assert!(rejection(&call(svc, Req::Ok).await).is_some());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_to_the_running_breaker() {
    let (mut svc, _) = make(base());
    let breaker = svc.handle().clone();
    run(&mut svc, &[Req::Ok, Req::Ok, Req::Ok, Req::Fail]).await;
    assert_eq!(breaker.state(), State::Closed);
    let stricter = base().failure_rate_threshold(0.2).build().unwrap();
    breaker.reconfigure(&stricter).unwrap();
    assert_eq!(breaker.config(), stricter);
    run(&mut svc, &[Req::Ok]).await; // window: ok ok fail ok = 0.25 >= 0.2
    assert_eq!(breaker.state(), State::Open);

    // a new window shape is refused as a whole
    let other = base()
        .window(Window::Count { size: 8 })
        .failure_rate_threshold(0.9)
        .build()
        .unwrap();
    let err = breaker.reconfigure(&other).unwrap_err();
    assert_eq!(err.field(), "window");
    assert_eq!(breaker.config(), stricter);

    // a new wait applies to the next opening
    let shorter = base()
        .failure_rate_threshold(0.2)
        .wait_duration(Duration::from_secs(2))
        .build()
        .unwrap();
    breaker.reconfigure(&shorter).unwrap();
    breaker.reset();
    trip(&mut svc).await;
    assert_eq!(
        rejection(&call(&mut svc, Req::Ok).await),
        Some(Duration::from_secs(2))
    );
}

#[tokio::test(start_paused = true)]
async fn snapshot_reports_counts_rates_and_wait() {
    let (mut svc, _) = make(
        base()
            .window(Window::Count { size: 10 })
            .minimum_calls(10)
            .slow_call_duration(Duration::from_millis(10)),
    );
    run(
        &mut svc,
        &[
            Req::Ok,
            Req::Fail,
            Req::Slow(20),
            Req::SlowFail(20),
            Req::Fail,
        ],
    )
    .await;
    let snap = svc.handle().snapshot();
    assert_eq!(snap.state, State::Closed);
    assert_eq!((snap.calls, snap.failures, snap.slow_calls), (5, 3, 2));
    assert_eq!(snap.failure_rate, 0.6);
    assert_eq!(snap.slow_call_rate, 0.4);
    assert_eq!(snap.consecutive_failures, 2); // slow failure, failure
    assert_eq!(snap.probes_admitted, 0);
    assert_eq!(snap.retry_after, None);
    run(&mut svc, &[Req::Ok; 5]).await; // 10 calls, 3 failures: stays closed
    assert_eq!(svc.handle().state(), State::Closed);
    assert_eq!(svc.handle().snapshot().consecutive_failures, 0);
    run(&mut svc, &[Req::Fail; 3]).await; // the last 10 now hold 5 failures
    let snap = svc.handle().snapshot();
    assert_eq!(snap.state, State::Open);
    assert_eq!(snap.retry_after, Some(Duration::from_secs(10)));
    assert_eq!((snap.calls, snap.failures), (10, 5));
}

#[tokio::test(start_paused = true)]
async fn health_signal_sees_outcomes_and_the_open_circuit() {
    let health = HealthSignal::new();
    let mut reader = health.subscribe();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = builder(base().build().unwrap())
        .health(health.clone())
        .build()
        .unwrap()
        .layer(Upstream { calls });
    run(&mut svc, &[Req::Ok, Req::Fail]).await;
    let stats = reader.read();
    assert_eq!((stats.successes, stats.failures), (1, 1));
    assert!(!health.is_circuit_open());
    run(&mut svc, &[Req::Fail, Req::Fail]).await;
    assert!(health.is_circuit_open());
    advance(Duration::from_secs(10)).await;
    run(&mut svc, &[Req::Ok]).await;
    assert!(!health.is_circuit_open());
}

#[test]
fn config_errors_and_toml_round_trip() {
    let err = BreakerConfig::builder()
        .failure_rate_threshold(1.5)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "failure_rate_threshold");
    assert!(err.to_string().contains("1.5"), "{err}");
    let err = BreakerConfig::builder()
        .window(Window::Count { size: 0 })
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "window.size");
    let err = toml::from_str::<BreakerConfig>(
        "window = { type = \"time\", duration = \"0s\", buckets = 4 }",
    )
    .unwrap()
    .validate()
    .unwrap_err();
    assert_eq!(err.field(), "window.duration");
    // a layer refuses an invalid config (a field set by hand)
    let mut config = BreakerConfig::default();
    config.minimum_calls = 0;
    let err = CircuitBreakerLayer::from_config(&config).unwrap_err();
    assert_eq!(err.field(), "minimum_calls");
    // and so does a running breaker, keeping the config it has
    let layer = CircuitBreakerLayer::from_config(&BreakerConfig::default()).unwrap();
    let err = layer.handle().reconfigure(&config).unwrap_err();
    assert_eq!(err.field(), "minimum_calls");
    assert_eq!(layer.handle().config(), BreakerConfig::default());

    let config = base()
        .consecutive_failures(5)
        .count_fatal(true)
        .build()
        .unwrap();
    let text = toml::to_string(&config).unwrap();
    assert!(text.contains("wait_duration = \"10s\""), "{text}");
    let back: BreakerConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, config);
}
