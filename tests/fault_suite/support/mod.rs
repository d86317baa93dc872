//! Shared pieces of the whole-stack fault suite: a scripted inner
//! service that misbehaves on demand, the whole stack built over three of them (Generic and
//! `.http()` profiles), a quiet-state check over every stage's snapshot, a way to run a
//! future that may panic, and a small seeded random generator for the property tests.

pub mod flavor;
pub mod rig;

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::{BoxError, Service};
use tower_prism::balance::{BalanceConfig, BalanceHandle, Strategy};
use tower_prism::breaker::{BreakerConfig, State, Window};
use tower_prism::limit::concurrency::ConcurrencyConfig;
use tower_prism::limit::rate::RateLimitConfig;
use tower_prism::retry::{Backoff, BudgetConfig, RetryConfig};
use tower_prism::{PolicyConfig, Profile, ReliabilityLayer, ReliabilityLayerBuilder, Snapshot};

/// What one call to a [`Scripted`] endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers at once.
    Ok,
    /// Fails at once (an `Err` in the Generic profile, a 503 over HTTP).
    Fail,
    /// Answers after this long (paused time makes an hour instant).
    Slow(Duration),
    /// Fails after this long.
    SlowFail(Duration),
    /// Never answers.
    Hang,
    /// Panics inside `call`, before any future exists.
    PanicInCall,
    /// Returns a future that panics when first polled.
    PanicInFuture,
}

/// What a [`Scripted`] endpoint's `poll_ready` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Ready at once (the default).
    Ready,
    /// Never ready (and never wakes the task).
    Never,
    /// Fails.
    Error,
    /// Panics.
    Panic,
}

/// The message every scripted panic carries (the quiet panic hook hides exactly these).
pub const SCRIPTED_PANIC: &str = "scripted panic";

/// The behaviour of one or more endpoints: a queue of faults for the next calls, then a
/// default, and counters of what happened.
#[derive(Debug)]
pub struct Script {
    next: Mutex<VecDeque<Fault>>,
    default: Mutex<Fault>,
    readiness: Mutex<Readiness>,
    calls: AtomicU64,
    live: AtomicU64,
}

impl Script {
    /// A script answering `default` to every call.
    pub fn new(default: Fault) -> Arc<Script> {
        Arc::new(Script {
            next: Mutex::new(VecDeque::new()),
            default: Mutex::new(default),
            readiness: Mutex::new(Readiness::Ready),
            calls: AtomicU64::new(0),
            live: AtomicU64::new(0),
        })
    }

    /// The next calls do `faults`, in order, before the default applies again.
    pub fn then(&self, faults: impl IntoIterator<Item = Fault>) {
        self.next.lock().unwrap().extend(faults);
    }

    /// Every call from now on (after any queued faults) does `fault`.
    pub fn set_default(&self, fault: Fault) {
        *self.default.lock().unwrap() = fault;
    }

    /// Forgets queued faults and answers `fault` from now on.
    pub fn reset(&self, fault: Fault) {
        self.next.lock().unwrap().clear();
        self.set_default(fault);
    }

    /// What `poll_ready` says from now on.
    pub fn set_readiness(&self, readiness: Readiness) {
        *self.readiness.lock().unwrap() = readiness;
    }

    fn poll_ready(&self) -> Poll<Result<(), BoxError>> {
        let readiness = *self.readiness.lock().unwrap();
        match readiness {
            Readiness::Ready => Poll::Ready(Ok(())),
            Readiness::Never => Poll::Pending,
            Readiness::Error => Poll::Ready(Err("scripted poll_ready failure".into())),
            Readiness::Panic => panic!("{SCRIPTED_PANIC} in poll_ready"),
        }
    }

    /// Calls received (including the ones that panicked).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Response futures of this script that exist now (neither finished nor dropped).
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::SeqCst)
    }

    fn take(&self) -> Fault {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // The lock is released before any scripted panic, so it is never poisoned.
        let queued = self.next.lock().unwrap().pop_front();
        queued.unwrap_or_else(|| *self.default.lock().unwrap())
    }
}

/// Counts a response future as live until it is dropped.
struct Live(Arc<Script>);

impl Live {
    fn new(script: &Arc<Script>) -> Live {
        script.live.fetch_add(1, Ordering::SeqCst);
        Live(script.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An endpoint service that does what its [`Script`] says (ready unless the script says
/// otherwise). Requests are
/// `u32`s echoed back, or HTTP requests answered `200`/`503` with an empty body.
#[derive(Debug, Clone)]
pub struct Scripted {
    script: Arc<Script>,
}

impl Scripted {
    /// An endpoint following `script`.
    pub fn new(script: &Arc<Script>) -> Scripted {
        Scripted {
            script: script.clone(),
        }
    }

    fn answer<T: Send + 'static>(
        &self,
        ok: T,
        fail: impl FnOnce() -> Result<T, BoxError> + Send + 'static,
    ) -> BoxFuture<Result<T, BoxError>> {
        let fault = self.script.take();
        if fault == Fault::PanicInCall {
            panic!("{SCRIPTED_PANIC} in call");
        }
        let live = Live::new(&self.script);
        Box::pin(async move {
            let _live = live;
            match fault {
                Fault::Ok => Ok(ok),
                Fault::Fail => fail(),
                Fault::Slow(after) => {
                    tokio::time::sleep(after).await;
                    Ok(ok)
                }
                Fault::SlowFail(after) => {
                    tokio::time::sleep(after).await;
                    fail()
                }
                Fault::Hang => std::future::pending().await,
                Fault::PanicInFuture => panic!("{SCRIPTED_PANIC} in the response future"),
                Fault::PanicInCall => unreachable!("panicked in call"),
            }
        })
    }
}

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<u32> for Scripted {
    type Response = u32;
    type Error = BoxError;
    type Future = BoxFuture<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.script.poll_ready()
    }

    fn call(&mut self, request: u32) -> Self::Future {
        self.answer(request, || Err("scripted failure".into()))
    }
}

/// The HTTP endpoint's response.
pub type HttpResponse = http::Response<String>;

impl<B> Service<http::Request<B>> for Scripted {
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFuture<Result<HttpResponse, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.script.poll_ready()
    }

    fn call(&mut self, _request: http::Request<B>) -> Self::Future {
        let unavailable = || {
            let mut response = http::Response::new(String::new());
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            Ok(response)
        };
        self.answer(http::Response::new(String::new()), unavailable)
    }
}

/// The endpoint keys of every stack in the suite.
pub const ENDPOINTS: [&str; 3] = ["a", "b", "c"];

/// Every stage, tuned so that tests reach each of them quickly in paused time: a rate limit
/// with a queue, a fixed concurrency limit that lets requests wait, a count-window breaker
/// with two half-open probes, three attempts with a fixed backoff and a retry budget, and
/// round robin over the endpoints with outlier ejection off (the tests assert on the
/// breaker and on in-flight counts, which ejection would blur).
pub fn every_stage_policy() -> PolicyConfig {
    let mut balance = BalanceConfig::default();
    balance.strategy = Strategy::RoundRobin;
    balance.outlier.enabled = false;
    PolicyConfig::builder()
        .rate_limit({
            let mut c = RateLimitConfig::new(100, Duration::from_secs(1));
            c.burst = Some(4);
            c.queue_size = 4;
            c.max_wait = Some(Duration::from_millis(100));
            c
        })
        .concurrency_limit({
            let mut c = ConcurrencyConfig::fixed(3);
            c.max_wait = Some(Duration::from_millis(50));
            c
        })
        .circuit_breaker(breaker_config())
        .retry(
            RetryConfig::builder()
                .max_attempts(3)
                .backoff(Backoff::fixed(Duration::from_millis(10)))
                // Budget arithmetic the suite's checks count on: a fifth of a retry per
                // first attempt, nothing per success (the default earns on success).
                .budget(
                    BudgetConfig::builder()
                        .ratio(0.2)
                        .success_ratio(0.0)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .balance(balance)
        .build()
        .unwrap()
}

/// `builder` with [`every_stage_policy`].
pub fn every_stage<P: Profile>(builder: ReliabilityLayerBuilder<P>) -> ReliabilityLayerBuilder<P> {
    builder.policy(every_stage_policy())
}

/// The suite's breaker: the last 10 calls, tripping at half of them failing once 4 are in,
/// open for a second, two half-open probes.
pub fn breaker_config() -> BreakerConfig {
    BreakerConfig::builder()
        .window(Window::Count { size: 10 })
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .wait_duration(Duration::from_secs(1))
        .permitted_calls_in_half_open(2)
        .build()
        .unwrap()
}

/// The stack over a balancer of three [`Scripted`] endpoints, the fault stage over the
/// whole balancer (the endpoints are the scripts themselves).
pub type Direct<Req, P> = tower_prism::Reliability<
    tower_prism::balance::Balance<&'static str, Scripted, Req, <P as Profile>::Classify>,
    P,
>;

/// A layer built from `builder`, the stack over three endpoints following `script` (one
/// script shared by all three), and the balancer's handle.
pub fn stack_over<P, Req>(
    layer: &ReliabilityLayer<P>,
    script: &Arc<Script>,
) -> (Direct<Req, P>, BalanceHandle<&'static str, Scripted>)
where
    P: Profile,
{
    let balance = layer
        .balancer::<&'static str, Scripted, Req>()
        .endpoints(ENDPOINTS.map(|key| (key, Scripted::new(script))))
        .build()
        .unwrap();
    let handle = balance.handle().clone();
    (layer.balanced(balance), handle)
}

/// Asserts that nothing is held anywhere in the stack: no queued request, no permit or
/// waiter in the concurrency limiter, no half-open probe admitted and unfinished, no
/// request in flight on an endpoint, no live inner future.
#[track_caller]
pub fn assert_quiet(
    layer_snapshot: &Snapshot,
    handle: &BalanceHandle<&'static str, Scripted>,
    script: &Script,
    context: &str,
) {
    if let Some(rate) = &layer_snapshot.rate_limit {
        assert_eq!(rate.queued, 0, "{context}: a request left in the queue");
    }
    if let Some(c) = &layer_snapshot.concurrency_limit {
        assert_eq!(c.in_flight, 0, "{context}: a concurrency permit leaked");
        assert_eq!(c.waiting, 0, "{context}: a concurrency waiter leaked");
    }
    if let Some(b) = &layer_snapshot.circuit_breaker {
        if b.state == State::HalfOpen {
            assert_eq!(
                b.probes_admitted, b.calls,
                "{context}: a half-open probe was admitted and never finished: {b:?}"
            );
        }
    }
    for endpoint in handle.snapshot().endpoints {
        assert_eq!(
            endpoint.in_flight, 0,
            "{context}: endpoint {} still counts a request in flight",
            endpoint.key
        );
    }
    assert_eq!(
        script.live(),
        0,
        "{context}: an inner future is still alive"
    );
}

/// The output of a future, or the fact that it panicked. The future is dropped right after
/// the panic (as a tokio task's is), so its guards run then.
pub async fn catching<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        },
    )
    .await
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// Hides the scripted panics' messages (they are expected); any other panic is reported by
/// the previous hook as usual.
pub fn quiet_scripted_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !panic_message(info.payload()).starts_with(SCRIPTED_PANIC) {
                previous(info);
            }
        }));
    });
}

/// Polls `future` once with a waker that does nothing (the tests poll again themselves).
pub fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(future).poll(&mut cx)
}

/// The seeded generator of the property tests.
pub use tower_prism_testkit::Rng;
