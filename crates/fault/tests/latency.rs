//! Injected latency on the paused clock: fixed delays are exact, uniform ones within
//! bounds; a delayed call dropped before its delay is over never reaches the service; a
//! delayed call counts against `max_active_faults` until its delay is over.

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

/// A stage whose delays are 100 ms and whose service takes 50 ms, with `max_active_faults`.
fn slow_service_with_at_most(
    max: u32,
) -> (
    FaultLayer,
    tower_prism_fault::Fault<
        impl Service<u32, Response = u32, Error = std::convert::Infallible, Future: Send>
            + Clone
            + Send
            + 'static,
    >,
) {
    let config = FaultConfig::builder()
        .seed(14)
        .latency(LatencyFault::fixed(1.0, MS * 100))
        .max_active_faults(max)
        .build()
        .unwrap();
    let layer = FaultLayer::from_config(&config).unwrap();
    let slow = tower::service_fn(|n: u32| async move {
        tokio::time::sleep(MS * 50).await;
        Ok::<_, std::convert::Infallible>(n)
    });
    let svc = layer.layer(slow);
    (layer, svc)
}

/// What a call drew, read off its future before it is polled.
fn drew<F: std::fmt::Debug>(future: &F) -> &'static str {
    match format!("{future:?}").as_str() {
        "ResponseFuture::Delayed" => "delayed",
        "ResponseFuture::Called" => "untouched",
        other => panic!("{other}"),
    }
}

/// `max_active_faults` (Envoy's): at most that many calls have a fault at once, and a
/// delayed call holds its place through its delay; a call drawing a fault past the limit
/// goes to the service untouched. There was no limit: a game day's delays piled up
/// without bound.
#[tokio::test(start_paused = true)]
async fn max_active_faults_caps_the_calls_with_a_fault_at_once() {
    let (layer, mut svc) = slow_service_with_at_most(2);
    let handle = layer.handle().clone();
    let mut running = Vec::new();
    for i in 0..3 {
        let future = svc.ready().await.unwrap().call(i);
        let want = if i < 2 { "delayed" } else { "untouched" };
        assert_eq!(drew(&future), want, "call {i}");
        running.push(tokio::spawn(future));
    }
    let snap = handle.snapshot();
    assert_eq!((snap.active_faults, snap.faults_overflow), (2, 1));
    assert_eq!((snap.calls, snap.injected_latency), (3, 2));

    // 90 ms on, both are still in their delays
    tokio::time::sleep(MS * 90).await;
    let future = svc.ready().await.unwrap().call(3);
    assert_eq!(drew(&future), "untouched");
    running.push(tokio::spawn(future));
    assert_eq!(handle.snapshot().active_faults, 2);

    for (i, call) in running.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), i as u32);
    }
    assert_eq!(handle.snapshot().active_faults, 0);
    let future = svc.ready().await.unwrap().call(4);
    assert_eq!(drew(&future), "delayed", "places are given back");
    assert_eq!(handle.snapshot().faults_overflow, 2);
}

/// A delayed call with no other fault gives its place back when its delay ends, as
/// Envoy's filter has since envoyproxy/envoy#14762: after its delay the call is an
/// ordinary one, and a slow answer (a long gRPC stream) no longer holds the limit. It held
/// its place until the service answered.
#[tokio::test(start_paused = true)]
async fn a_delayed_call_gives_its_place_back_when_its_delay_ends() {
    let (layer, mut svc) = slow_service_with_at_most(1);
    let handle = layer.handle().clone();
    let mut first = Box::pin(svc.ready().await.unwrap().call(1));
    assert_eq!(drew(&first), "delayed");
    assert_eq!(drew(&svc.ready().await.unwrap().call(2)), "untouched");
    assert_eq!(handle.snapshot().active_faults, 1, "in its delay");

    tokio::time::sleep(MS * 110).await;
    assert!(
        futures_poll(first.as_mut()).is_pending(),
        "the service answers in 50 ms"
    );
    assert_eq!(handle.snapshot().active_faults, 0, "the delay is over");
    let second = svc.ready().await.unwrap().call(3);
    assert_eq!(drew(&second), "delayed", "the place is free");
    assert_eq!(first.await.unwrap(), 1);
    assert_eq!(second.await.unwrap(), 3);
    let snap = handle.snapshot();
    assert_eq!((snap.active_faults, snap.faults_overflow), (0, 1));
}

/// A faulted call dropped in its delay (cancelled by a timeout above, a client gone) gives
/// its place back; one dropped while the service answers it gave it back when its delay
/// ended, and gives nothing back twice.
#[tokio::test(start_paused = true)]
async fn an_active_fault_is_given_back_when_its_call_is_dropped() {
    let (layer, mut svc) = slow_service_with_at_most(1);
    let handle = layer.handle().clone();
    let in_delay = svc.ready().await.unwrap().call(1);
    assert_eq!(drew(&in_delay), "delayed");
    assert_eq!(drew(&svc.ready().await.unwrap().call(2)), "untouched");
    drop(in_delay);
    assert_eq!(handle.snapshot().active_faults, 0);

    let mut in_service = Box::pin(svc.ready().await.unwrap().call(3));
    tokio::time::sleep(MS * 110).await;
    assert!(
        futures_poll(in_service.as_mut()).is_pending(),
        "the service answers in 50 ms"
    );
    assert_eq!(handle.snapshot().active_faults, 0);
    drop(in_service);
    assert_eq!(handle.snapshot().active_faults, 0, "once");
    let next = svc.ready().await.unwrap().call(5);
    assert_eq!(drew(&next), "delayed");
    assert_eq!(handle.snapshot().active_faults, 1);
}

/// A delayed call whose service panics gave its place back when its delay ended, and the
/// unwinding gives nothing back twice: a panicking service never uses up the limit.
#[tokio::test(start_paused = true)]
async fn an_active_fault_is_given_back_when_its_call_panics() {
    let config = FaultConfig::builder()
        .seed(15)
        .latency(LatencyFault::fixed(1.0, MS * 10))
        .max_active_faults(1)
        .build()
        .unwrap();
    let layer = FaultLayer::from_config(&config).unwrap();
    let panicking = tower::service_fn(|n: u32| async move {
        assert!(n != 1, "scripted panic in the service");
        Ok::<_, std::convert::Infallible>(n)
    });
    let mut svc = layer.layer(panicking);
    let future = svc.ready().await.unwrap().call(1);
    assert_eq!(drew(&future), "delayed");
    let panic = tokio::spawn(future).await.unwrap_err();
    assert!(panic.is_panic());
    assert_eq!(layer.handle().snapshot().active_faults, 0);
    let future = svc.ready().await.unwrap().call(2);
    assert_eq!(drew(&future), "delayed");
    assert_eq!(future.await.unwrap(), 2);
    assert_eq!(layer.handle().snapshot().active_faults, 0);
}
