//! `Fault::pass_through`: a stage switched off forwards readiness, answers and errors, and
//! injects, counts and records nothing.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::{service_fn, Service, ServiceExt};
use tower_prism_core::BoxError;
use tower_prism_fault::{Fault, HttpStatus, NoStatus};
use tower_prism_testkit::metrics::Capture;
use tower_prism_testkit::{call_now, Echo, Gate, UpstreamError};

#[test]
fn readiness_is_the_inner_services() {
    let gate = Gate::default();
    let mut svc: Fault<Gate> = Fault::pass_through(gate.clone());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_pending());
    gate.open.store(true, Ordering::SeqCst);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    gate.broken.store(true, Ordering::SeqCst);
    let Poll::Ready(Err(err)) = svc.poll_ready(&mut cx) else {
        panic!("expected the inner readiness error");
    };
    assert_eq!(err.downcast_ref::<UpstreamError>(), Some(&UpstreamError(0)));
}

#[tokio::test]
async fn answers_and_errors_are_the_inner_services() {
    let gate = Gate::default();
    gate.open.store(true, Ordering::SeqCst);
    let mut svc: Fault<Gate, NoStatus> = Fault::pass_through(gate);
    for n in 1..=100 {
        assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
    }
    let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(err.downcast_ref::<UpstreamError>(), Some(&UpstreamError(0)));
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
                tokio::time::sleep(Duration::from_millis(ms)).await;
                drop(guard);
                Ok::<_, BoxError>(ms)
            }
        })
    };
    let mut svc: Fault<_> = Fault::pass_through(slow);
    let mut future = Box::pin(svc.ready().await.unwrap().call(1_000));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(future.as_mut().poll(&mut cx).is_pending());
    drop(future);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
}

#[test]
fn a_pass_through_stage_records_no_metric() {
    let memory = Capture::default();
    metrics::with_local_recorder(&memory, || {
        let mut svc: Fault<Echo, HttpStatus> = Fault::pass_through(Echo);
        for i in 0..10u16 {
            let answer = http::Response::builder().status(200 + i).body(()).unwrap();
            assert_eq!(call_now(&mut svc, answer).status(), 200 + i);
        }
    });
    assert_eq!(memory.registered(), Vec::<String>::new());
}

#[test]
fn accessors_work_in_pass_through_mode() {
    let mut svc: Fault<Echo> = Fault::pass_through(Echo);
    assert!(svc.handle().is_none());
    let _: &mut Echo = svc.get_mut();
    let _: &Echo = svc.get_ref();
    assert!(format!("{:?}", svc.clone()).contains("pass_through: true"));
    let _: Echo = svc.into_inner();
}
