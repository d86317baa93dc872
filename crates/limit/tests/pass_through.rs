//! A switched-off limit (`pass_through`) is the same service type as an engaged one and
//! only forwards: readiness, responses and errors (still the inner error type under the
//! `BoxError`), no metric, no limit, and a future that can be dropped mid-flight.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio_test::{assert_pending, assert_ready, task};
use tower::{BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_limit::concurrency::{ConcurrencyConfig, ConcurrencyLimit, ConcurrencyLimitLayer};
use tower_prism_limit::rate::{RateLimit, RateLimitConfig, RateLimitLayer};
use tower_prism_limit::Error;
use tower_prism_testkit::metrics::Capture;
use tower_prism_testkit::{call_now, Echo};

/// The inner service's own error: it must come out of the stage still downcastable.
#[derive(Debug, PartialEq)]
struct Refused(&'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused: {}", self.0)
    }
}

impl std::error::Error for Refused {}

const PENDING: u8 = 0;
const READY: u8 = 1;
const BROKEN: u8 = 2;

/// An inner service whose readiness the test sets, and whose calls answer, fail, or hang
/// until dropped.
#[derive(Clone)]
struct Scripted {
    readiness: Arc<AtomicU8>,
    parked: Arc<Mutex<Option<Waker>>>,
}

impl Scripted {
    fn new(readiness: u8) -> Self {
        Scripted {
            readiness: Arc::new(AtomicU8::new(readiness)),
            parked: Arc::default(),
        }
    }

    /// Makes the service ready and wakes the task that found it pending.
    fn open(&self) {
        self.readiness.store(READY, Ordering::SeqCst);
        if let Some(waker) = self.parked.lock().unwrap().take() {
            waker.wake();
        }
    }
}

/// Sets its flag when dropped: shows the inner future was dropped with the stage's.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

enum Req {
    Answer(u32),
    Fail,
    Hang(DropFlag),
}

enum Reply {
    Now(Option<Result<u32, Refused>>),
    Never(#[allow(dead_code)] DropFlag),
}

impl Future for Reply {
    type Output = Result<u32, Refused>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Reply::Now(result) => Poll::Ready(result.take().expect("polled after completion")),
            Reply::Never(_) => Poll::Pending,
        }
    }
}

impl Service<Req> for Scripted {
    type Response = u32;
    type Error = Refused;
    type Future = Reply;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        match self.readiness.load(Ordering::SeqCst) {
            READY => Poll::Ready(Ok(())),
            BROKEN => Poll::Ready(Err(Refused("not ready"))),
            _ => {
                *self.parked.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn call(&mut self, req: Req) -> Reply {
        match req {
            Req::Answer(n) => Reply::Now(Some(Ok(n))),
            Req::Fail => Reply::Now(Some(Err(Refused("call")))),
            Req::Hang(flag) => Reply::Never(flag),
        }
    }
}

fn rate(inner: Scripted) -> RateLimit<Scripted> {
    RateLimit::pass_through(inner)
}

fn concurrency(inner: Scripted) -> ConcurrencyLimit<Scripted> {
    ConcurrencyLimit::pass_through(inner)
}

fn downcast(error: BoxError) -> Refused {
    *error
        .downcast::<Refused>()
        .expect("the inner error, boxed as it came")
}

/// `poll_ready` is the inner service's: pending (with the inner service holding the
/// task's waker, so it is woken), then ready; an inner readiness error comes out boxed.
fn forwards_readiness<S>(make: fn(Scripted) -> S)
where
    S: Service<Req, Error = BoxError>,
{
    let inner = Scripted::new(PENDING);
    let mut svc = make(inner.clone());
    let mut task = task::spawn(());
    assert_pending!(task.enter(|cx, _| svc.poll_ready(cx)));
    inner.open();
    assert!(
        task.is_woken(),
        "the inner service's wake-up reaches the task"
    );
    assert_ready!(task.enter(|cx, _| svc.poll_ready(cx))).unwrap();

    let mut broken = make(Scripted::new(BROKEN));
    let error = assert_ready!(task.enter(|cx, _| broken.poll_ready(cx))).unwrap_err();
    assert_eq!(downcast(error), Refused("not ready"));
}

#[test]
fn readiness_is_forwarded() {
    forwards_readiness(rate);
    forwards_readiness(concurrency);
}

async fn forwards_calls<S>(make: fn(Scripted) -> S)
where
    S: Service<Req, Response = u32, Error = BoxError>,
{
    let mut svc = make(Scripted::new(READY));
    assert_eq!(
        svc.ready()
            .await
            .unwrap()
            .call(Req::Answer(7))
            .await
            .unwrap(),
        7
    );
    let error = svc
        .ready()
        .await
        .unwrap()
        .call(Req::Fail)
        .await
        .unwrap_err();
    assert_eq!(downcast(error), Refused("call"));
}

#[tokio::test(start_paused = true)]
async fn responses_and_errors_are_forwarded() {
    forwards_calls(rate).await;
    forwards_calls(concurrency).await;
}

/// Dropping a pass-through future mid-flight drops the inner future with it, and the
/// service goes on answering.
fn drops_cleanly<S>(make: fn(Scripted) -> S)
where
    S: Service<Req, Response = u32, Error = BoxError>,
{
    let mut svc = make(Scripted::new(READY));
    let dropped = Arc::new(AtomicBool::new(false));
    let mut task = task::spawn(());
    assert_ready!(task.enter(|cx, _| svc.poll_ready(cx))).unwrap();
    let mut hanging = task::spawn(svc.call(Req::Hang(DropFlag(dropped.clone()))));
    assert_pending!(hanging.poll());
    assert!(!dropped.load(Ordering::SeqCst));
    drop(hanging);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the inner future was dropped"
    );

    assert_ready!(task.enter(|cx, _| svc.poll_ready(cx))).unwrap();
    let mut next = task::spawn(svc.call(Req::Answer(3)));
    assert_eq!(assert_ready!(next.poll()).unwrap(), 3);
}

#[test]
fn a_future_dropped_mid_flight_drops_the_inner_one() {
    drops_cleanly(rate);
    drops_cleanly(concurrency);
}

/// Limits that an engaged stage would hit at the second call.
fn one_per_minute() -> RateLimitConfig {
    RateLimitConfig::builder()
        .rate(1)
        .period(Duration::from_secs(60))
        .burst(1)
        .build()
        .unwrap()
}

fn one_at_a_time() -> ConcurrencyConfig {
    ConcurrencyConfig::builder()
        .initial_limit(1)
        .min_limit(1)
        .max_limit(1)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn pass_through_never_rejects() {
    // The engaged rate limit rejects the second call of the minute...
    let layer = RateLimitLayer::from_config(&one_per_minute()).unwrap();
    let mut engaged = layer.layer(Scripted::new(READY));
    assert_eq!(
        engaged
            .ready()
            .await
            .unwrap()
            .call(Req::Answer(1))
            .await
            .unwrap(),
        1
    );
    let error = engaged
        .ready()
        .await
        .unwrap()
        .call(Req::Answer(2))
        .await
        .unwrap_err();
    assert!(matches!(
        error.downcast_ref::<Error>(),
        Some(Error::RateLimited { .. })
    ));
    // ...a pass-through one admits every call.
    let mut open = rate(Scripted::new(READY));
    for n in 0..100 {
        assert_eq!(
            open.ready()
                .await
                .unwrap()
                .call(Req::Answer(n))
                .await
                .unwrap(),
            n
        );
    }

    // The engaged concurrency limit rejects a second call while one is in flight...
    let layer = ConcurrencyLimitLayer::from_config(&one_at_a_time()).unwrap();
    let mut engaged = layer.layer(Scripted::new(READY));
    let flag = Arc::new(AtomicBool::new(false));
    let _held = engaged
        .ready()
        .await
        .unwrap()
        .call(Req::Hang(DropFlag(flag.clone())));
    let error = engaged
        .ready()
        .await
        .unwrap()
        .call(Req::Answer(2))
        .await
        .unwrap_err();
    assert!(matches!(
        error.downcast_ref::<Error>(),
        Some(Error::ConcurrencyLimited { .. })
    ));
    // ...a pass-through one lets any number run at once.
    let mut open = concurrency(Scripted::new(READY));
    let held: Vec<_> = (0..10)
        .map(|_| open.call(Req::Hang(DropFlag(flag.clone()))))
        .collect();
    assert_eq!(
        open.ready()
            .await
            .unwrap()
            .call(Req::Answer(5))
            .await
            .unwrap(),
        5
    );
    drop(held);
}

#[test]
fn pass_through_registers_and_records_no_metric() {
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        let mut rate = RateLimit::pass_through(Echo);
        let mut concurrency = ConcurrencyLimit::<Echo>::pass_through(Echo);
        for n in 0..10u32 {
            assert_eq!(call_now(&mut rate, n), n);
            assert_eq!(call_now(&mut concurrency, n), n);
        }
    });
    assert_eq!(capture.registered(), Vec::<String>::new());

    // The same recorder does see an engaged stage: the assertion above can fail.
    metrics::with_local_recorder(&capture, || {
        let layer = RateLimitLayer::from_config(&one_per_minute()).unwrap();
        call_now(&mut layer.layer(Echo), 1u32);
    });
    assert!(!capture.registered().is_empty());
}

#[test]
fn accessors_clone_and_debug_work_in_both_modes() {
    let mut open = RateLimit::pass_through(Echo);
    assert!(open.handle().is_none());
    let _: &Echo = open.get_ref();
    let _: &mut Echo = open.get_mut();
    let copy = open.clone();
    assert!(format!("{copy:?}").contains("pass_through: true"));
    let _: Echo = open.into_inner();

    let engaged = RateLimitLayer::from_config(&one_per_minute())
        .unwrap()
        .layer(Echo);
    assert!(engaged.handle().is_some());
    assert!(!format!("{engaged:?}").contains("pass_through"));

    let mut open = ConcurrencyLimit::<Echo>::pass_through(Echo);
    assert!(open.handle().is_none());
    let _: &Echo = open.get_ref();
    let _: &mut Echo = open.get_mut();
    let copy = open.clone();
    assert!(format!("{copy:?}").contains("pass_through: true"));
    let _: Echo = open.into_inner();

    let layer = ConcurrencyLimitLayer::from_config(&one_at_a_time()).unwrap();
    let engaged = layer.layer(Echo);
    // The service's handle is the layer's limiter: a permit taken through one is missing
    // from the other.
    let _permit = layer.handle().try_acquire().unwrap();
    assert!(engaged.handle().unwrap().try_acquire().is_err());
    assert!(!format!("{engaged:?}").contains("pass_through"));
}
