//! `Retry::pass_through`: a switched-off retry stage forwards readiness, responses and
//! errors (boxed as an engaged stage boxes an error it does not retry), never copies or
//! replays the request, never enforces a deadline nor asks a balancer to avoid endpoints,
//! records no metric, and a future dropped mid-flight drops the inner call.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::{Layer, Service};
use tower_prism_core::internal::route::avoided;
use tower_prism_core::{BoxError, RequestDeadline};
use tower_prism_retry::{Backoff, HedgeConfig, Retry, RetryConfig, RetryLayer};
use tower_prism_testkit::metrics::Capture;

/// The inner service's own error: must come back out of the stage, downcastable.
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

#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Ok(u32),
    Fail,
    /// Never answers.
    Hang,
}

/// A request that counts its copies.
#[derive(Debug)]
struct Req {
    act: Act,
    copies: Arc<AtomicUsize>,
}

impl Clone for Req {
    fn clone(&self) -> Self {
        self.copies.fetch_add(1, Ordering::SeqCst);
        Req {
            act: self.act,
            copies: self.copies.clone(),
        }
    }
}

/// Counts the inner futures dropped.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A service whose readiness the test sets; it counts calls and dropped futures, and
/// notes what each call was asked to avoid (as a balancer below would read it).
#[derive(Debug, Clone, Default)]
struct Probe {
    readiness: Arc<AtomicU8>,
    calls: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    copies: Arc<AtomicUsize>,
    avoided: Arc<Mutex<Vec<Option<u64>>>>,
}

impl Probe {
    fn req(&self, act: Act) -> Req {
        Req {
            act,
            copies: self.copies.clone(),
        }
    }
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
        self.avoided.lock().unwrap().push(avoided());
        let guard = DropCount(self.dropped.clone());
        Box::pin(async move {
            let _guard = guard;
            match req.act {
                Act::Ok(n) => Ok(n),
                Act::Fail => Err(Down),
                Act::Hang => std::future::pending().await,
            }
        })
    }
}

fn pass_through(probe: &Probe) -> Retry<Probe> {
    Retry::pass_through(probe.clone())
}

fn engaged(probe: &Probe, config: RetryConfig) -> Retry<Probe> {
    RetryLayer::from_config(&config)
        .unwrap()
        .layer(probe.clone())
}

/// Polls `fut` once with a no-op waker.
fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// One call that must complete on its first poll.
fn call_now(svc: &mut Retry<Probe>, req: Req) -> Result<u32, BoxError> {
    match poll_once(pin!(svc.call(req))) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("the call did not complete at once"),
    }
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
fn a_failure_is_returned_once_and_uncopied_as_the_inner_error() {
    let probe = Probe::default();
    let mut svc = pass_through(&probe);
    assert_eq!(call_now(&mut svc, probe.req(Act::Ok(7))).unwrap(), 7);
    // A retryable failure: called once, the request never copied, the error the inner one.
    let e = call_now(&mut svc, probe.req(Act::Fail)).unwrap_err();
    assert_eq!(e.downcast_ref::<Down>(), Some(&Down));
    assert!(e.downcast_ref::<tower_prism_retry::Error>().is_none());
    assert_eq!(probe.calls.load(Ordering::SeqCst), 2);
    assert_eq!(probe.copies.load(Ordering::SeqCst), 0);

    // An engaged stage that does not retry returns the same error, as it is.
    let control = Probe::default();
    let once = RetryConfig::builder().max_attempts(1).build().unwrap();
    let e = call_now(&mut engaged(&control, once), control.req(Act::Fail)).unwrap_err();
    assert_eq!(e.downcast_ref::<Down>(), Some(&Down));
    assert!(e.downcast_ref::<tower_prism_retry::Error>().is_none());
}

#[test]
fn no_endpoint_is_avoided_even_where_hedging_would_ask() {
    let probe = Probe::default();
    let mut svc = pass_through(&probe);
    call_now(&mut svc, probe.req(Act::Ok(1))).unwrap();
    assert_eq!(*probe.avoided.lock().unwrap(), [None]);

    // The control: a hedging stage calls inside a route scope (and copies the request).
    let control = Probe::default();
    let hedging = RetryConfig::builder()
        .hedge(HedgeConfig::fixed(Duration::from_millis(10)))
        .build()
        .unwrap();
    call_now(&mut engaged(&control, hedging), control.req(Act::Ok(1))).unwrap();
    assert_eq!(*control.avoided.lock().unwrap(), [Some(0)]);
    assert!(control.copies.load(Ordering::SeqCst) > 0);
}

#[tokio::test(start_paused = true)]
async fn no_deadline_or_attempt_timeout_is_enforced() {
    let probe = Probe::default();
    let mut svc = pass_through(&probe);
    let expired = RequestDeadline::after(Duration::ZERO);
    let mut fut = pin!(expired.scope(|| svc.call(probe.req(Act::Hang))));
    assert!(poll_once(fut.as_mut()).is_pending());
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(poll_once(fut.as_mut()).is_pending());
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);

    // The control: an engaged stage under the same deadline gives up on the attempt.
    let control = Probe::default();
    let config = RetryConfig::builder()
        .max_attempts(1)
        .attempt_timeout(Duration::from_secs(1))
        .backoff(Backoff::none())
        .build()
        .unwrap();
    let mut stage = engaged(&control, config);
    let mut fut = pin!(expired.scope(|| stage.call(control.req(Act::Hang))));
    let _ = poll_once(fut.as_mut());
    tokio::time::advance(Duration::from_millis(1)).await;
    let Poll::Ready(Err(e)) = poll_once(fut.as_mut()) else {
        panic!("the engaged stage did not time the attempt out");
    };
    assert!(matches!(
        e.downcast_ref::<tower_prism_retry::Error>(),
        Some(tower_prism_retry::Error::AttemptTimedOut { .. })
    ));
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
    assert_eq!(call_now(&mut copy, probe.req(Act::Ok(3))).unwrap(), 3);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
    assert!(Arc::ptr_eq(&svc.into_inner().calls, &probe.calls));

    let stage = engaged(&Probe::default(), RetryConfig::default());
    assert!(stage.handle().is_some());
    assert!(!format!("{stage:?}").contains("pass_through"));
}

#[test]
fn no_metric_is_registered_or_recorded() {
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        let probe = Probe::default();
        let mut svc = pass_through(&probe);
        call_now(&mut svc, probe.req(Act::Ok(1))).unwrap();
        call_now(&mut svc, probe.req(Act::Fail)).unwrap_err();
    });
    assert_eq!(capture.registered(), Vec::<String>::new());

    // The control: the same recorder sees an engaged stage's metrics.
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        let probe = Probe::default();
        let once = RetryConfig::builder().max_attempts(1).build().unwrap();
        call_now(&mut engaged(&probe, once), probe.req(Act::Fail)).unwrap_err();
    });
    assert!(!capture.registered().is_empty());
}

#[test]
fn a_future_dropped_mid_flight_drops_the_inner_call() {
    let probe = Probe::default();
    let mut svc = pass_through(&probe);
    {
        let mut fut = pin!(svc.call(probe.req(Act::Hang)));
        assert!(poll_once(fut.as_mut()).is_pending());
        assert!(format!("{fut:?}").contains("pass_through: true"));
        assert_eq!(probe.dropped.load(Ordering::SeqCst), 0);
    }
    assert_eq!(probe.dropped.load(Ordering::SeqCst), 1);
    // Nothing is left behind: the next call goes through as before.
    assert_eq!(call_now(&mut svc, probe.req(Act::Ok(5))).unwrap(), 5);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 2);
}
