//! Helpers the limiter's service tests share.

// Each test file uses its own part of this.
#![allow(dead_code)]

pub mod concurrency;
pub mod rate;
