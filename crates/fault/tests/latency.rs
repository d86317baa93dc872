//! Injected latency on the paused clock: fixed delays are exact, uniform ones within
//! bounds; a delayed call dropped before its delay is over never reaches the service.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{Counting, Got};
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_fault::{FaultConfig, FaultLayer, LatencyFault};

const MS: Duration = Duration::from_millis(1);

fn layer(latency: LatencyFault) -> FaultLayer {
    let config = FaultConfig::builder()
        .seed(11)
        .latency(latency)
        .build()
        .unwrap();
    FaultLayer::from_config(&config).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_fixed_delay_is_exact_and_comes_before_the_call() {
    let inner = Counting::default();
    let mut svc = layer(LatencyFault::fixed(1.0, MS * 250)).layer(inner.clone());
    let start = Instant::now();
    let mut fut = pin!(ServiceExt::<u32>::ready(&mut svc).await.unwrap().call(7));
    // not yet: the service has not been called
    tokio::time::sleep(MS * 249).await;
    assert!(futures_poll(fut.as_mut()).is_pending());
    assert_eq!(inner.calls(), 0);
    assert_eq!(fut.await.unwrap(), 7);
    assert_eq!(start.elapsed(), MS * 250);
    assert_eq!(inner.calls(), 1);
}

fn futures_poll<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// How long each of `calls` calls through a stage with `latency` took, on the paused clock.
async fn delays(latency: LatencyFault, calls: u32) -> Vec<Duration> {
    let layer = layer(latency);
    let mut svc = layer.layer(Counting::default());
    let mut seen = Vec::new();
    for i in 0..calls {
        let start = Instant::now();
        let answer = ServiceExt::<u32>::ready(&mut svc)
            .await
            .unwrap()
            .call(i)
            .await
            .unwrap();
        assert_eq!(answer, i);
        seen.push(start.elapsed());
    }
    assert_eq!(layer.handle().snapshot().injected_latency, u64::from(calls));
    seen
}

#[tokio::test(start_paused = true)]
async fn uniform_delays_stay_within_bounds() {
    let seen = delays(LatencyFault::uniform(1.0, MS * 20, MS * 40), 500).await;
    assert!(
        seen.iter().all(|d| (MS * 20..=MS * 40).contains(d)),
        "{seen:?}"
    );
    let mean = seen.iter().sum::<Duration>() / seen.len() as u32;
    assert!((MS * 28..=MS * 32).contains(&mean), "mean {mean:?}");
}

#[tokio::test(start_paused = true)]
async fn lognormal_delays_centre_on_the_median() {
    let mut seen = delays(LatencyFault::lognormal(1.0, MS * 40, MS * 200), 1000).await;
    seen.sort();
    let median = seen[500];
    assert!((MS * 35..=MS * 45).contains(&median), "median {median:?}");
    assert!(seen[990] > MS * 120, "p99 {:?}", seen[990]);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_call_dropped_before_its_delay_never_reaches_the_service() {
    let inner = Counting::default();
    let mut svc = layer(LatencyFault::fixed(1.0, MS * 100)).layer(inner.clone());
    let request = std::sync::Arc::new(5u32);
    let fut = ServiceExt::<std::sync::Arc<u32>>::ready(&mut svc)
        .await
        .unwrap()
        .call(request.clone());
    assert_eq!(
        std::sync::Arc::strong_count(&request),
        2,
        "the call holds it"
    );
    tokio::time::sleep(MS * 50).await;
    drop(fut);
    // the request (and the service clone) went with the future
    assert_eq!(std::sync::Arc::strong_count(&request), 1);
    assert_eq!(std::sync::Arc::strong_count(&inner.calls), 2, "inner + svc");
    tokio::time::sleep(MS * 200).await;
    assert_eq!(inner.calls(), 0);
    // the service still works
    let n = ServiceExt::<std::sync::Arc<u32>>::ready(&mut svc)
        .await
        .unwrap()
        .call(request.clone())
        .await
        .unwrap();
    assert_eq!(*n, 5);
    assert_eq!(inner.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_delay_then_an_error_waits_and_never_calls() {
    let config = FaultConfig::builder()
        .seed(12)
        .error(1.0)
        .latency(LatencyFault::fixed(1.0, MS * 30))
        .build()
        .unwrap();
    let inner = Counting::default();
    let layer = FaultLayer::from_config(&config).unwrap();
    let mut svc = layer.layer(inner.clone());
    let start = Instant::now();
    let result = ServiceExt::<u32>::ready(&mut svc)
        .await
        .unwrap()
        .call(1)
        .await;
    assert_eq!(Got::of(&result), Got::Injected);
    assert_eq!(start.elapsed(), MS * 30);
    assert_eq!(inner.calls(), 0);
    let snap = layer.handle().snapshot();
    assert_eq!((snap.injected_errors, snap.injected_latency), (1, 1));
}

/// A service that holds tower's contract strictly: each instance must be polled ready
/// before each call; a clone starts not ready.
#[derive(Debug, Default)]
struct Strict {
    ready: bool,
}

impl Clone for Strict {
    fn clone(&self) -> Self {
        Strict { ready: false }
    }
}

impl Service<u32> for Strict {
    type Response = u32;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<u32, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        assert!(std::mem::take(&mut self.ready), "called without poll_ready");
        std::future::ready(Ok(req * 2))
    }
}

#[tokio::test(start_paused = true)]
async fn delayed_and_plain_calls_keep_the_readiness_contract() {
    let config = FaultConfig::builder()
        .seed(13)
        .latency(LatencyFault::fixed(0.5, MS * 10))
        .build()
        .unwrap();
    let layer = FaultLayer::from_config(&config).unwrap();
    let mut svc = layer.layer(Strict::default());
    let mut pending = Vec::new();
    for i in 0..100 {
        // several calls in flight at once, each on the instance made ready for it
        pending.push(svc.ready().await.unwrap().call(i));
    }
    for (i, fut) in pending.into_iter().enumerate() {
        assert_eq!(fut.await.unwrap(), 2 * i as u32);
    }
    let delayed = layer.handle().snapshot().injected_latency;
    assert!((30..70).contains(&delayed), "{delayed}");
}

/// A delayed call is made in a poll, after the stages above returned from their `call`:
/// it is made inside what they told the services below while calling (the caller's
/// deadline, the endpoints a retry avoids), as an undelayed one is. The service below saw
/// neither, so a deadline stage's documented `RequestDeadline::current()` was `None`
/// during a game day, and a balancer below sent a retry back to the endpoint that failed.
#[tokio::test(start_paused = true)]
async fn a_delayed_call_is_made_in_the_callers_scopes() {
    use tower_prism_core::internal::route::{avoided, call_avoiding};
    use tower_prism_core::RequestDeadline;

    let seen = tower::service_fn(|_: u32| {
        let deadline = RequestDeadline::current().map(RequestDeadline::remaining);
        let avoid = avoided();
        async move { Ok::<_, std::convert::Infallible>((deadline, avoid)) }
    });
    let mut svc = layer(LatencyFault::fixed(1.0, MS * 10)).layer(seen);
    let deadline = RequestDeadline::after(Duration::from_secs(1));
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    let (future, _) = deadline.scope(|| call_avoiding(0b100, || svc.call(1)));
    let (deadline, avoid) = future.await.unwrap();
    assert_eq!(deadline, Some(MS * 990), "the caller's deadline, 10 ms on");
    assert_eq!(avoid, Some(0b100), "the endpoints to avoid");
    // and nothing leaks into the caller's own scope afterwards
    assert_eq!((RequestDeadline::current(), avoided()), (None, None));
}
