//! Shared helpers for the tower-prism benchmarks: the services benchmarked against.
//!
//! The benchmarks themselves live in `benches/`, one file per component, each measuring
//! tower-prism beside the tower built-in or peer crate doing the same job, in the same run.

/// A service that is always ready and answers every request with itself, at once (the
/// same echo service the zero-allocation tests use).
pub use tower_prism_testkit::Echo as Noop;

/// A current-thread tokio runtime for benchmarks that drive futures one at a time.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

/// One call through a ready service whose future completes `Ok` on its first poll: the
/// unit every per-call benchmark measures.
pub fn one_call<S: tower_service::Service<u64>>(
    svc: &mut S,
    cx: &mut std::task::Context<'_>,
    i: u64,
) {
    use std::task::Poll;
    assert!(matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))));
    let fut = std::pin::pin!(svc.call(i));
    assert!(matches!(
        std::hint::black_box(std::future::Future::poll(fut, cx)),
        Poll::Ready(Ok(_))
    ));
}
