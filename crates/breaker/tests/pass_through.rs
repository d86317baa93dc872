//! `CircuitBreaker::pass_through`: a switched-off breaker forwards readiness, responses
//! and errors untouched (never rejects, whatever fails), records no metric, and a future
//! dropped mid-flight drops the inner call.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::{Layer, Service};
use tower_prism_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer, Window};
use tower_prism_core::BoxError;
use tower_prism_testkit::metrics::Capture;

/// The inner service's own error: must come back out of the breaker, downcastable.
#[derive(Debug, PartialEq)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("down")
    }
}

impl std::error::Error for Down {}

const READY: u8 = 0;
const PENDING: u8 = 1;
const BROKEN: u8 = 2;

#[derive(Debug, Clone, Copy)]
enum Req {
    Ok(u32),
    Fail,
    /// Never answers.
    Hang,
}

/// Counts the inner futures dropped.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A service whose readiness the test sets, and which counts calls and dropped futures.
#[derive(Debug, Clone, Default)]
struct Probe {
    readiness: Arc<AtomicU8>,
    calls: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl Service<Req> for Probe {
    type Response = u32;
    type Error = Down;
    type Future = Pin<Box<dyn Future<Output = Result<u32, Down>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Down>> {
        match self.readiness.load(Ordering::SeqCst) {
            READY => Poll::Ready(Ok(())),
            PENDING => Poll::Pending,
            _ => Poll::Ready(Err(Down)),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let guard = DropCount(self.dropped.clone());
        Box::pin(async move {
            let _guard = guard;
            match req {
                Req::Ok(n) => Ok(n),
                Req::Fail => Err(Down),
                Req::Hang => std::future::pending().await,
            }
        })
    }
}

fn pass_through(probe: &Probe) -> CircuitBreaker<Probe> {
    CircuitBreaker::pass_through(probe.clone())
}

/// Polls `fut` once with a no-op waker.
fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// One call that must complete on its first poll.
fn call_now(svc: &mut CircuitBreaker<Probe>, req: Req) -> Result<u32, BoxError> {
    match poll_once(pin!(svc.call(req))) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("the call did not complete at once"),
    }
}

/// A breaker that opens after 2 failures in a window of 2.
fn engaged_layer() -> CircuitBreakerLayer {
    let config = BreakerConfig::builder()
        .window(Window::Count { size: 2 })
        .minimum_calls(2)
        .wait_duration(Duration::from_secs(60))
        .build()
        .unwrap();
    CircuitBreakerLayer::from_config(&config).unwrap()
}

#[test]
fn readiness_is_the_inner_services() {
    let probe = Probe::default();
    let mut svc = pass_through(&probe);
    let mut cx = Context::from_waker(Waker::noop());

    probe.readiness.store(PENDING, Ordering::SeqCst);
    assert!(svc.poll_ready(&mut cx).is_pending());

    probe.readiness.store(BROKEN, Ordering::SeqCst);
    let Poll::Ready(Err(e)) = svc.poll_ready(&mut cx) else {
        panic!("the inner service's readiness error was not forwarded");
    };
    assert_eq!(e.downcast_ref::<Down>(), Some(&Down));

    probe.readiness.store(READY, Ordering::SeqCst);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
}

#[test]
fn responses_and_errors_pass_untouched_and_nothing_is_ever_rejected() {
    let probe = Probe::default();
    let mut svc = pass_through(&probe);
    assert_eq!(call_now(&mut svc, Req::Ok(7)).unwrap(), 7);
    // Far more failures than any breaker tolerates: every one reaches the inner service.
    for _ in 0..50 {
        let e = call_now(&mut svc, Req::Fail).unwrap_err();
        assert_eq!(e.downcast_ref::<Down>(), Some(&Down));
        assert!(e.downcast_ref::<tower_prism_breaker::Error>().is_none());
    }
    assert_eq!(call_now(&mut svc, Req::Ok(8)).unwrap(), 8);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 52);

    // The same inputs through an engaged breaker: the same error type while closed, then
    // the breaker's own rejection, which pass-through never gives.
    let engaged_probe = Probe::default();
    let mut engaged = engaged_layer().layer(engaged_probe.clone());
    for _ in 0..2 {
        let e = call_now(&mut engaged, Req::Fail).unwrap_err();
        assert_eq!(e.downcast_ref::<Down>(), Some(&Down));
    }
    let e = call_now(&mut engaged, Req::Ok(1)).unwrap_err();
    assert!(e.downcast_ref::<tower_prism_breaker::Error>().is_some());
    assert_eq!(engaged_probe.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn accessors_clone_and_debug_in_both_modes() {
    let probe = Probe::default();
    let mut svc = pass_through(&probe);
    assert!(svc.handle().is_none());
    assert!(format!("{svc:?}").contains("pass_through: true"));
    assert!(Arc::ptr_eq(&svc.get_ref().calls, &probe.calls));
    svc.get_mut().readiness.store(PENDING, Ordering::SeqCst);
    assert_eq!(probe.readiness.load(Ordering::SeqCst), PENDING);
    probe.readiness.store(READY, Ordering::SeqCst);

    // A clone is a pass-through over a clone of the inner service.
    let mut copy = svc.clone();
    assert!(copy.handle().is_none());
    assert_eq!(call_now(&mut copy, Req::Ok(3)).unwrap(), 3);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
    assert!(Arc::ptr_eq(&svc.into_inner().calls, &probe.calls));

    let engaged = engaged_layer().layer(Probe::default());
    assert!(engaged.handle().is_some());
    assert!(!format!("{engaged:?}").contains("pass_through"));
}

#[test]
fn no_metric_is_registered_or_recorded() {
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        let probe = Probe::default();
        let mut svc = pass_through(&probe);
        call_now(&mut svc, Req::Ok(1)).unwrap();
        call_now(&mut svc, Req::Fail).unwrap_err();
    });
    assert_eq!(capture.registered(), Vec::<String>::new());

    // The control: the same recorder sees an engaged breaker's metrics.
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        let mut svc = engaged_layer().layer(Probe::default());
        call_now(&mut svc, Req::Ok(1)).unwrap();
    });
    assert!(!capture.registered().is_empty());
}

#[test]
fn a_future_dropped_mid_flight_drops_the_inner_call() {
    let probe = Probe::default();
    let mut svc = pass_through(&probe);
    {
        let mut fut = pin!(svc.call(Req::Hang));
        assert!(poll_once(fut.as_mut()).is_pending());
        assert!(format!("{fut:?}").contains("PassThrough"));
        assert_eq!(probe.dropped.load(Ordering::SeqCst), 0);
    }
    assert_eq!(probe.dropped.load(Ordering::SeqCst), 1);
    // Nothing is left behind: the next call goes through as before.
    assert_eq!(call_now(&mut svc, Req::Ok(5)).unwrap(), 5);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 2);
}
