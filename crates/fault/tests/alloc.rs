//! A stage that injects nothing (switched off, or every rate at zero) allocates nothing
//! per call: a counting global allocator around 1000 calls. So does a stage in
//! pass-through mode, and an [`EmptyHttpBody`] status response.

use std::time::Duration;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{Empty, Full};
use tower_layer::Layer;
use tower_prism_fault::{
    EmptyHttpBody, Fault, FaultConfig, FaultLayer, InjectStatus, LatencyFault,
};
use tower_prism_testkit::{allocations, allocations_per_call, CountingAlloc, Echo};
use tower_service::Service;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn an_idle_stage_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let off = FaultConfig::builder()
        .enabled(false)
        .error(0.5)
        .build()
        .unwrap();
    let zero = FaultConfig::builder()
        .latency(LatencyFault::fixed(0.0, Duration::from_secs(1)))
        .build()
        .unwrap();
    for (what, config) in [("off", off), ("zero rates", zero)] {
        let layer = FaultLayer::builder(config).name("alloc").build().unwrap();
        let mut svc = layer.layer(Echo);
        assert_eq!(
            allocations_per_call(&mut svc, |i| i, 100, 1000),
            0,
            "{what}"
        );
    }
}

#[test]
fn an_active_stage_allocates_nothing_on_calls_it_lets_through() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    // enabled with a tiny rate: the draw, the counters and the plan read allocate nothing
    let config = FaultConfig::builder().seed(1).error(1e-12).build().unwrap();
    let layer = FaultLayer::from_config(&config).unwrap();
    let mut svc = layer.layer(Echo);
    assert_eq!(allocations_per_call(&mut svc, |i| i, 100, 1000), 0);
    assert_eq!(layer.handle().snapshot().calls, 1100);
}

#[test]
fn a_delayed_call_allocates_only_its_state() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let config = FaultConfig::builder()
        .seed(1)
        .latency(LatencyFault::fixed(1.0, Duration::from_millis(10)))
        .build()
        .unwrap();
    let layer = FaultLayer::from_config(&config).unwrap();
    let mut svc = layer.layer(Echo);
    let _enter = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    // Each call: the sleep registers with the timer, the paused clock moves past it, and
    // the call completes, with the inner service's clone.
    let mut one_call = |i: u64| {
        assert!(Service::<u64>::poll_ready(&mut svc, &mut cx).is_ready());
        let mut fut = pin!(svc.call(i));
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "delayed");
        rt.block_on(tokio::time::sleep(Duration::from_millis(10)));
        match fut.poll(&mut cx) {
            Poll::Ready(Ok(n)) => assert_eq!(n, i),
            _ => panic!("the delay is over"),
        }
    };
    for i in 0..100 {
        one_call(i);
    }
    let before = allocations();
    for i in 0..1000 {
        one_call(i);
    }
    // The timer, the request and the service clone are boxed together (so that calls let
    // through do not carry them); nothing else.
    assert_eq!(allocations() - before, 1000);
    assert_eq!(layer.handle().snapshot().injected_latency, 1100);
}

#[test]
fn a_pass_through_stage_allocates_nothing() {
    let mut svc: Fault<Echo> = Fault::pass_through(Echo);
    assert_eq!(allocations_per_call(&mut svc, |i| i, 10, 1000), 0);
}

#[test]
fn an_empty_body_status_allocates_nothing() {
    fn empty<B: 'static>() -> u64 {
        let before = allocations();
        for _ in 0..100 {
            let response: Option<http::Response<B>> =
                EmptyHttpBody.response(StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.is_some());
        }
        allocations() - before
    }
    assert_eq!(empty::<String>(), 0, "String");
    assert_eq!(empty::<Vec<u8>>(), 0, "Vec<u8>");
    assert_eq!(empty::<()>(), 0, "()");
    assert_eq!(empty::<Bytes>(), 0, "Bytes");
    assert_eq!(empty::<Full<Bytes>>(), 0, "Full");
    assert_eq!(empty::<Empty<Bytes>>(), 0, "Empty");
}
