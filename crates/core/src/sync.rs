//! Atomics and `Arc`, from `std` normally and from `loom` under `--cfg loom`. **Not part of
//! the public API** (hidden from the docs): the component crates share it.
//!
//! Lock-free state in every tower-prism crate imports its atomics from here, so the same
//! algorithm code runs under loom's model checker without change.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::Arc;

#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub use std::sync::Arc;
