//! An inner service that follows a script, one act per attempt, counting its calls and the
//! attempt futures still alive: what the fault tests drop, cancel and panic against.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{BoxError, Service};

/// What the inner service does on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Fails at once.
    Fail,
    /// Fails after the delay.
    FailAfter(Duration),
    /// Answers at once (with the request).
    Answer,
    /// Answers after the delay.
    AnswerAfter(Duration),
    /// Never answers.
    Never,
    /// Panics in `call`.
    PanicInCall,
    /// Panics when its future is first polled.
    PanicInFuture,
    /// Panics in its future after the delay.
    PanicAfter(Duration),
}

/// Plays its script, then `then` on every later attempt; counts its calls and the attempt
/// futures it handed out that are still alive. Its readiness can be switched off
/// (`ready`): `poll_ready` is then pending (the test switches it back and polls again).
#[derive(Clone)]
pub struct Scripted {
    script: Arc<Vec<Act>>,
    then: Act,
    calls: Arc<AtomicU32>,
    alive: Arc<AtomicI32>,
    pub ready: Arc<AtomicBool>,
}

struct Alive(Arc<AtomicI32>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Scripted {
    /// Plays `script`, then answers.
    pub fn new(script: &[Act]) -> Self {
        Self::then(script, Act::Answer)
    }

    /// Plays `script`, then never answers.
    pub fn then_never(script: &[Act]) -> Self {
        Self::then(script, Act::Never)
    }

    /// Plays `script`, then does `then` on every attempt.
    pub fn then(script: &[Act], then: Act) -> Self {
        Scripted {
            script: Arc::new(script.to_vec()),
            then,
            calls: Arc::default(),
            alive: Arc::default(),
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn alive(&self) -> i32 {
        self.alive.load(Ordering::SeqCst)
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

impl Service<u32> for Scripted {
    type Response = u32;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, n: u32) -> BoxFuture {
        let i = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
        let act = self.script.get(i).copied().unwrap_or(self.then);
        if act == Act::PanicInCall {
            panic!("the inner service panicked in call");
        }
        self.alive.fetch_add(1, Ordering::SeqCst);
        let alive = Alive(self.alive.clone());
        Box::pin(async move {
            let _alive = alive;
            match act {
                Act::Fail => Err("refused".into()),
                Act::FailAfter(d) => {
                    tokio::time::sleep(d).await;
                    Err("refused late".into())
                }
                Act::Answer | Act::PanicInCall => Ok(n),
                Act::AnswerAfter(d) => {
                    tokio::time::sleep(d).await;
                    Ok(n)
                }
                Act::Never => std::future::pending().await,
                Act::PanicInFuture => panic!("the inner future panicked"),
                Act::PanicAfter(d) => {
                    tokio::time::sleep(d).await;
                    panic!("the inner future panicked")
                }
            }
        })
    }
}
