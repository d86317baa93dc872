//! Rate limiting for tower (work in progress).

pub mod concurrency;
