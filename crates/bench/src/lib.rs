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
