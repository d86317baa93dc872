//! The whole-stack fault suite: every stage stacked (rate limit with a queue, concurrency
//! limit, circuit breaker, retry with a budget, balance over three endpoints), in the
//! `Generic` and `.http()` profiles, over inner services that hang, answer after an hour,
//! panic, fail readiness, or whose user functions panic; calls dropped at random polls;
//! time jumping by days; reloads in a storm. After each fault every permit, probe, queue
//! slot, in-flight count and budget grant is back where it started.
//!
//! One test binary (one link) for the whole suite; each module is one kind of fault.

mod support;

mod cancel;
mod hangs;
mod panics;
mod readiness;
mod reload;
mod retry_after;
mod time;
