//! Issue 15's scenarios through the whole stack built from a TOML policy that sets a
//! concurrency limit, a circuit breaker and a retry stage and leaves their settings at the
//! defaults (HTTP profile), over a simulated upstream of 8 slots x 20 ms (400 requests/s)
//! on tokio's paused clock. Each test asserts one of the targets for the defaults:
//! the stack must help, never hurt, with nothing tuned.
//!
//! The same scenarios, next to tower and a tuned policy, are in the lab
//! (`cargo run --release -p tower-prism-lab -- defaults`, report in `docs/lab/defaults/`).

mod support;

mod brownout;
mod outage;
mod overload;
mod shedding;
