//! `Deadline::pass_through` and `PropagateDeadline::pass_through`: a stage switched off
//! forwards readiness, answers and errors, and never reads, writes or enforces a deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::Request;
use tower::{service_fn, Service, ServiceExt};
use tower_prism_core::{BoxError, RequestDeadline};
use tower_prism_deadline::{AnyRequest, Deadline, HttpRequest, PropagateDeadline};
use tower_prism_testkit::metrics::Capture;
use tower_prism_testkit::{call_now, Echo, Gate, UpstreamError};

const MS: Duration = Duration::from_millis(1);

#[test]
fn readiness_is_the_inner_services() {
    let gate = Gate::default();
    let mut svc: Deadline<Gate> = Deadline::pass_through(gate.clone());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_pending());
    gate.open.store(true, Ordering::SeqCst);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    gate.broken.store(true, Ordering::SeqCst);
    let Poll::Ready(Err(err)) = svc.poll_ready(&mut cx) else {
        panic!("expected the inner readiness error");
    };
    assert_eq!(err.downcast_ref::<UpstreamError>(), Some(&UpstreamError(0)));

    let mut propagate: PropagateDeadline<Gate> = PropagateDeadline::pass_through(Gate::default());
    assert!(propagate.poll_ready(&mut cx).is_pending());
    propagate.get_ref().open.store(true, Ordering::SeqCst);
    assert!(matches!(propagate.poll_ready(&mut cx), Poll::Ready(Ok(()))));
}

#[tokio::test]
async fn answers_and_errors_are_the_inner_services() {
    let gate = Gate::default();
    gate.open.store(true, Ordering::SeqCst);
    let mut svc: Deadline<Gate> = Deadline::pass_through(gate.clone());
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(err.downcast_ref::<UpstreamError>(), Some(&UpstreamError(0)));

    // the propagate stage keeps the inner error type itself
    let mut propagate: PropagateDeadline<Gate> = PropagateDeadline::pass_through(gate);
    assert_eq!(
        propagate.ready().await.unwrap().call(0).await,
        Err(UpstreamError(0))
    );
}

#[tokio::test(start_paused = true)]
async fn no_deadline_is_set_read_or_enforced() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = {
        let calls = calls.clone();
        service_fn(move |req: Request<u64>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let ambient = RequestDeadline::current();
            let carried = RequestDeadline::of(&req);
            let header = req.headers().get("grpc-timeout").cloned();
            async move {
                tokio::time::sleep(MS * *req.body() as u32).await;
                Ok::<_, BoxError>((ambient, carried, header))
            }
        })
    };
    let mut svc: Deadline<_, HttpRequest> = Deadline::pass_through(seen.clone());

    // a request whose deadline has passed still reaches the inner service, untouched
    let mut req = Request::new(50);
    RequestDeadline::after(Duration::ZERO).set(&mut req);
    let carried = RequestDeadline::of(&req);
    let (ambient, got, header) = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!((ambient, got, header), (None, carried, None));

    // an ambient deadline above passes during the call: nothing here times the call out
    svc.ready().await.unwrap();
    let above = RequestDeadline::after(MS * 10);
    let future = above.scope(|| svc.call(Request::new(50)));
    let (ambient, got, _) = future.await.unwrap();
    assert_eq!(
        (ambient, got),
        (Some(above), None),
        "seen as the caller set it"
    );
    assert!(above.is_expired());

    // the propagate stage writes no extension and no header either
    let mut propagate: PropagateDeadline<_, HttpRequest> = PropagateDeadline::pass_through(seen);
    propagate.ready().await.unwrap();
    let future = above.scope(|| propagate.call(Request::new(0)));
    let (_, got, header) = future.await.unwrap();
    assert_eq!((got, header), (None, None));
}

#[tokio::test(start_paused = true)]
async fn a_pass_through_future_dropped_mid_flight_drops_the_inner_call() {
    /// Counts its drops: the inner call's resources.
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let slow = {
        let dropped = dropped.clone();
        service_fn(move |ms: u64| {
            let guard = Guard(dropped.clone());
            async move {
                tokio::time::sleep(MS * ms as u32).await;
                drop(guard);
                Ok::<_, BoxError>(ms)
            }
        })
    };
    let mut svc: Deadline<_> = Deadline::pass_through(slow.clone());
    let mut future = Box::pin(svc.ready().await.unwrap().call(1_000));
    assert!(futures_poll_once(&mut future).is_pending());
    drop(future);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    // the service is still usable
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);

    let mut propagate: PropagateDeadline<_> = PropagateDeadline::pass_through(slow);
    let mut future = Box::pin(propagate.ready().await.unwrap().call(1_000));
    assert!(futures_poll_once(&mut future).is_pending());
    drop(future);
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
}

/// One poll of an `Unpin` future with a no-op waker.
fn futures_poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_pass_through_stage_records_no_metric() {
    let memory = Capture::default();
    metrics::with_local_recorder(&memory, || {
        let mut svc: Deadline<Echo> = Deadline::pass_through(Echo);
        let mut propagate: PropagateDeadline<Echo> = PropagateDeadline::pass_through(Echo);
        for i in 0..10u32 {
            assert_eq!(call_now(&mut svc, i), i);
            assert_eq!(call_now(&mut propagate, i), i);
        }
    });
    assert_eq!(memory.registered(), Vec::<String>::new());
}

#[test]
fn accessors_work_in_pass_through_mode() {
    let mut svc: Deadline<Echo, AnyRequest> = Deadline::pass_through(Echo);
    assert!(svc.handle().is_none());
    let _: &mut Echo = svc.get_mut();
    let copy = svc.clone();
    assert!(format!("{copy:?}").contains("pass_through: true"));
    let _: Echo = svc.into_inner();

    let propagate: PropagateDeadline<Echo> = PropagateDeadline::pass_through(Echo);
    assert!(propagate.handle().is_none());
    assert!(format!("{:?}", propagate.clone()).contains("pass_through: true"));
    let _: &Echo = propagate.get_ref();
    let _: Echo = propagate.into_inner();
}
