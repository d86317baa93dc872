//! An upstream that misbehaves on request, for the fault tests of both limiters.

// Each fault test file uses its own part of this.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{pending, ready, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

pub mod concurrency;
pub mod rate;

/// What the upstream does with a request (the request is its own instruction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers at once.
    Answer,
    /// Never answers.
    Never,
    /// Answers after this long.
    After(Duration),
    /// Panics inside `call`.
    PanicInCall,
    /// Its future panics after this long.
    PanicAfter(Duration),
}

/// The message every deliberate panic carries, so the quiet hook can tell them apart.
pub const DELIBERATE: &str = "deliberate fault";

pub const HOUR: Duration = Duration::from_secs(3600);
pub const MS: Duration = Duration::from_millis(1);

/// The misbehaving upstream. Clones share the count of calls that reached it, and a
/// readiness switch (to hold admitted requests before the call).
#[derive(Clone)]
pub struct Upstream {
    pub calls: Arc<AtomicUsize>,
    pub ready: Arc<AtomicBool>,
}

impl Upstream {
    pub fn new() -> Self {
        quiet_deliberate_panics();
        Upstream {
            calls: Arc::new(AtomicUsize::new(0)),
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The upstream's response future.
pub type Answer = Pin<Box<dyn Future<Output = Result<Fault, Infallible>> + Send>>;

impl Service<Fault> for Upstream {
    type Response = Fault;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, fault: Fault) -> Answer {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match fault {
            Fault::Answer => Box::pin(ready(Ok(fault))),
            Fault::Never => Box::pin(pending()),
            Fault::After(delay) => Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(fault)
            }),
            Fault::PanicInCall => panic!("{DELIBERATE}: the upstream panicked in call"),
            Fault::PanicAfter(delay) => Box::pin(async move {
                tokio::time::sleep(delay).await;
                if fault != Fault::Answer {
                    panic!("{DELIBERATE}: the upstream's future panicked");
                }
                Ok(fault)
            }),
        }
    }
}

/// Runs `f`, which must panic (deliberately), and catches the panic.
pub fn must_panic<T>(f: impl FnOnce() -> T) {
    quiet_deliberate_panics();
    assert!(
        catch_unwind(AssertUnwindSafe(f)).is_err(),
        "expected a deliberate panic"
    );
}

/// Keeps the deliberate panics out of the test output (others print as usual).
pub fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !text.starts_with(DELIBERATE) {
                default(info);
            }
        }));
    });
}
