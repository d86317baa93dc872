//! Adaptive concurrency limiting (work in progress).
