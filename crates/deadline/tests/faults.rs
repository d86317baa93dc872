//! The deadline stage when the inner service panics, in `call` (inside the stage's ambient
//! deadline scope) or in its future: the panic propagates, the ambient deadline does not
//! outlive the call, no expiry is counted, and later calls are timed as usual.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_prism_core::{BoxError, RequestDeadline};
use tower_prism_deadline::{DeadlineConfig, DeadlineLayer, Error};

const MS: Duration = Duration::from_millis(1);

/// What the upstream does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Answers after this many milliseconds.
    AnswerAfter(u64),
    PanicInCall,
    PanicInFuture,
}

/// An upstream acting as told, recording the ambient deadline of each call it takes.
fn upstream(
    seen: Arc<Mutex<Vec<Option<RequestDeadline>>>>,
) -> impl Service<Act, Response = (), Error = BoxError, Future: Send> + Clone {
    service_fn(move |act: Act| {
        seen.lock().unwrap().push(RequestDeadline::current());
        assert!(act != Act::PanicInCall, "the upstream panicked in call");
        async move {
            match act {
                Act::AnswerAfter(ms) => tokio::time::sleep(MS * ms as u32).await,
                Act::PanicInFuture => {
                    tokio::time::sleep(MS * 10).await;
                    panic!("the upstream's future panicked")
                }
                Act::PanicInCall => {}
            }
            Ok::<_, BoxError>(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_panicking_upstream_leaves_no_ambient_deadline_and_no_expiry() {
    let layer =
        DeadlineLayer::from_config(&DeadlineConfig::builder().timeout(MS * 100).build().unwrap())
            .unwrap();
    let handle = layer.handle().clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(upstream(seen.clone()));

    svc.ready().await.unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| drop(svc.call(Act::PanicInCall)))).is_err());
    assert_eq!(
        RequestDeadline::current(),
        None,
        "the call's deadline is not left ambient on this thread"
    );
    let panicked = tokio::spawn(svc.clone().oneshot(Act::PanicInFuture)).await;
    assert!(panicked.unwrap_err().is_panic());
    assert_eq!(handle.snapshot().expired, 0);

    // Both panicking calls ran under their deadline; the next call gets its own, and a
    // slow one still expires on time, counted once.
    let before = tokio::time::Instant::now();
    svc.ready()
        .await
        .unwrap()
        .call(Act::AnswerAfter(1))
        .await
        .unwrap();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Act::AnswerAfter(500))
        .await
        .unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::Expired { .. })
    ));
    assert_eq!(before.elapsed(), MS * 101);
    assert_eq!(handle.snapshot().expired, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(Option::is_some), "{seen:?}");
    assert!(seen[2] != seen[3], "each call has its own deadline");
}

/// A call made outside any stage after a panicking one under a deadline stage sees no
/// deadline at all: a panic cannot leak one call's deadline into another's.
#[tokio::test(start_paused = true)]
async fn a_call_after_a_panic_outside_the_stage_sees_no_deadline() {
    let layer =
        DeadlineLayer::from_config(&DeadlineConfig::builder().timeout(MS * 100).build().unwrap())
            .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut svc = layer.layer(upstream(seen.clone()));
    svc.ready().await.unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| drop(svc.call(Act::PanicInCall)))).is_err());
    let mut bare = upstream(seen.clone());
    bare.ready()
        .await
        .unwrap()
        .call(Act::AnswerAfter(0))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].is_some() && seen[1].is_none(), "{seen:?}");
}
