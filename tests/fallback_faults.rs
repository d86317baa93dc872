//! The fallback stage when the world misbehaves: the inner service panicking in `call` or
//! in its future, the user's answer closure, response predicate or fallback service
//! panicking, and a call dropped at each point of its life. A panic propagates (tower
//! middleware does not catch panics, and a panic is not an error to answer); nothing is
//! left behind (no inner or answer future alive), and later calls are answered and
//! counted as before.

use std::convert::Infallible;
use std::future::{pending, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tower::{BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism::fallback::{FallbackConfig, FallbackLayer};
use tower_prism::{Error, ErrorKind};

/// What the inner service does with a request (the request is its own instruction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Answer,
    Fail,
    Hang,
    PanicInCall,
    PanicInFuture,
}

/// An inner service acting as told, counting its futures alive.
#[derive(Clone, Default)]
struct Inner(Arc<AtomicUsize>);

/// Counts a future alive until it is dropped.
struct Alive(Arc<AtomicUsize>);

impl Alive {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Alive(count.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl Service<Act> for Inner {
    type Response = u32;
    type Error = BoxError;
    type Future = BoxFuture<u32, BoxError>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, act: Act) -> Self::Future {
        assert!(
            act != Act::PanicInCall,
            "the inner service panicked in call"
        );
        let alive = Alive::new(&self.0);
        Box::pin(async move {
            let _alive = alive;
            tokio::task::yield_now().await;
            match act {
                Act::Answer => Ok(1),
                Act::Fail | Act::PanicInCall => Err("refused".into()),
                Act::Hang => pending().await,
                Act::PanicInFuture => panic!("the inner future panicked"),
            }
        })
    }
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

/// Answers every kind (`on` empty) with 7.
fn answering_seven() -> FallbackLayer<tower_prism::fallback::AnswerValue<u32>> {
    FallbackLayer::value([], 7u32)
}

/// The inner service panicking in `call` or in its future: the panic propagates, no
/// future is left alive, nothing is counted as answered or passed on, and later failures
/// are answered.
#[tokio::test]
async fn a_panicking_inner_service_is_not_answered_and_leaves_nothing() {
    let layer = answering_seven();
    let inner = Inner::default();
    let mut svc = layer.layer(inner.clone());
    svc.ready().await.unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| drop(svc.call(Act::PanicInCall)))).is_err());
    let joined = tokio::spawn(layer.layer(inner.clone()).oneshot(Act::PanicInFuture)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(inner.0.load(Ordering::SeqCst), 0);
    let snap = layer.handle().snapshot();
    assert_eq!((snap.answered, snap.passed_on), (0, 0));
    assert_eq!(
        layer.layer(inner.clone()).oneshot(Act::Fail).await.unwrap(),
        7
    );
    assert_eq!(layer.handle().snapshot().answered, 1);
}

/// The user's answer closure panicking: the panic propagates, and the stage answers the
/// next failure as before (no state of the stage is left half-changed).
#[tokio::test]
async fn a_panicking_answer_closure_leaves_the_stage_answering() {
    let layer = FallbackLayer::answer_with([ErrorKind::Inner], |error: &Error| {
        assert!(
            error.get_ref().to_string() != "panic",
            "the answer closure panicked"
        );
        7u32
    });
    let failing = |message: &'static str| {
        tower::service_fn(move |_: ()| async move { Err::<u32, BoxError>(message.into()) })
    };
    let joined = tokio::spawn(layer.layer(failing("panic")).oneshot(())).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(
        layer.layer(failing("refused")).oneshot(()).await.unwrap(),
        7
    );
    // An answer is counted when the stage decides to give it, before it is made (as
    // Polly raises OnFallback before the fallback action): the panicking one counts.
    let snap = layer.handle().snapshot();
    assert_eq!(
        (snap.answered_for(ErrorKind::Inner), snap.passed_on),
        (2, 0)
    );
}

/// The user's response predicate panicking: the panic propagates, the inner future is
/// gone, and later responses are judged as before.
#[tokio::test]
async fn a_panicking_response_predicate_leaves_the_stage_judging() {
    let layer = FallbackLayer::builder(FallbackConfig::default())
        .value(7u32)
        .on_response(|n: &u32| {
            assert!(*n != 0, "the response predicate panicked");
            *n == 2
        })
        .build()
        .unwrap();
    let echo = tower::service_fn(|n: u32| async move { Ok::<u32, Infallible>(n) });
    let joined = tokio::spawn(layer.layer(echo).oneshot(0)).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(layer.layer(echo).oneshot(1).await.unwrap(), 1);
    assert_eq!(layer.layer(echo).oneshot(2).await.unwrap(), 7);
    assert_eq!(layer.handle().snapshot().answered, 1);
}

/// A fallback service whose `call` panics, or whose answer panics: the panic propagates,
/// no answer future is left alive, and the next failure is answered.
#[tokio::test]
async fn a_panicking_fallback_service_leaves_nothing() {
    #[derive(Clone, Default)]
    struct Backup(Arc<AtomicUsize>);
    impl Service<Error> for Backup {
        type Response = u32;
        type Error = Infallible;
        type Future = BoxFuture<u32, Infallible>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, error: Error) -> Self::Future {
            let why = error.get_ref().to_string();
            assert!(
                why != "panic in call",
                "the fallback service panicked in call"
            );
            let alive = Alive::new(&self.0);
            Box::pin(async move {
                let _alive = alive;
                tokio::task::yield_now().await;
                assert!(why != "panic in future", "the fallback's future panicked");
                Ok(7)
            })
        }
    }
    let backup = Backup::default();
    let layer = FallbackLayer::service([], backup.clone());
    let failing = |message: &'static str| {
        tower::service_fn(move |_: ()| async move { Err::<u32, BoxError>(message.into()) })
    };
    for why in ["panic in call", "panic in future"] {
        let joined = tokio::spawn(layer.layer(failing(why)).oneshot(())).await;
        assert!(joined.unwrap_err().is_panic(), "{why}");
        assert_eq!(backup.0.load(Ordering::SeqCst), 0, "{why}");
    }
    assert_eq!(
        layer.layer(failing("refused")).oneshot(()).await.unwrap(),
        7
    );
}

/// A call dropped before its first poll, while the inner call runs, while the answer
/// runs, and after its answer: each leaves no future alive, and counts only what was
/// decided (an answer started is counted once, a call dropped earlier not at all).
#[tokio::test]
async fn a_call_dropped_at_any_point_leaves_nothing_and_counts_once() {
    #[derive(Clone, Default)]
    struct SlowBackup(Arc<AtomicUsize>);
    impl Service<Error> for SlowBackup {
        type Response = u32;
        type Error = Infallible;
        type Future = BoxFuture<u32, Infallible>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Error) -> Self::Future {
            let alive = Alive::new(&self.0);
            Box::pin(async move {
                let _alive = alive;
                tokio::task::yield_now().await;
                Ok(7)
            })
        }
    }
    let backup = SlowBackup::default();
    let layer = FallbackLayer::service([], backup.clone());
    let inner = Inner::default();
    let mut svc = layer.layer(inner.clone());
    // before the first poll
    svc.ready().await.unwrap();
    drop(svc.call(Act::Fail));
    // while the inner call runs (it yields once, then fails)
    svc.ready().await.unwrap();
    let mut calling = svc.call(Act::Hang);
    assert!(poll_once(&mut calling).is_pending());
    assert_eq!(inner.0.load(Ordering::SeqCst), 1);
    drop(calling);
    assert_eq!(inner.0.load(Ordering::SeqCst), 0);
    assert_eq!(layer.handle().snapshot().answered, 0);
    // while the answer runs: the inner call failed, the answer yields once
    svc.ready().await.unwrap();
    let mut answering = svc.call(Act::Fail);
    assert!(poll_once(&mut answering).is_pending());
    assert!(poll_once(&mut answering).is_pending());
    assert_eq!(inner.0.load(Ordering::SeqCst), 0, "the failed call is gone");
    assert_eq!(backup.0.load(Ordering::SeqCst), 1, "the answer runs");
    drop(answering);
    assert_eq!(backup.0.load(Ordering::SeqCst), 0);
    assert_eq!(layer.handle().snapshot().answered, 1);
    // after the answer
    svc.ready().await.unwrap();
    let mut answered = svc.call(Act::Fail);
    let answer = loop {
        if let Poll::Ready(answer) = poll_once(&mut answered) {
            break answer;
        }
    };
    assert_eq!(answer.unwrap(), 7);
    assert_eq!(backup.0.load(Ordering::SeqCst), 0);
    drop(answered);
    let snap = layer.handle().snapshot();
    assert_eq!((snap.answered, snap.passed_on), (2, 0));
    assert_eq!(
        svc.ready().await.unwrap().call(Act::Answer).await.unwrap(),
        1
    );
}
