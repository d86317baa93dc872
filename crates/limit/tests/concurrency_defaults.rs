//! The default concurrency limit against issue 15's reference upstream, in paused time: 8
//! slots, 20 ms of service time (400 requests/s of capacity), a FIFO queue in front of the
//! slots, and an open-loop load at a fixed rate.
//!
//! - under 2x overload (800 requests/s) the default keeps goodput at capacity and p99 within
//!   2x of the unloaded p99, refusing the excess at once;
//! - in a full outage (fast errors, or calls that hang until a timeout) the limit does not
//!   collapse, so the failures keep reaching whatever sits below it (a breaker);
//! - in a brownout (25 % of calls fail fast) it sheds nothing the upstream could serve.
//!
//! Run with `-- --nocapture` to see the figures of each run.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_limit::concurrency::{
    AimdConfig, ConcurrencyConfig, ConcurrencyLimitLayer, ConcurrencyLimiter, GradientConfig,
    LimitAlgorithm,
};
use tower_prism_limit::Error;

const SLOTS: usize = 8;
const SERVICE_TIME: Duration = Duration::from_millis(20);

/// What the upstream does with a call.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Serves every call.
    Healthy,
    /// Every call fails after 1 ms, without taking a slot.
    DeadFast,
    /// Every call hangs for a second (a caller's timeout), then fails.
    DeadHanging,
    /// One call in four (at random, seeded) fails after 1 ms; the others are served.
    Brownout,
    /// As `Brownout`, but a failed call (which took a slot for its service time) is retried
    /// below the limiter, as the stack's retry stage does, after a backoff of up to 100 ms,
    /// and then served: the limiter sees a quarter of the calls take several times the
    /// service time without any queue.
    BrownoutRetried,
    /// Serves every call, with lognormal service times (mean 20 ms, sigma 0.5).
    Jittery,
    /// Serves every call, twice as slowly from 5 s on (a slower release, a colder cache).
    Slowdown,
}

/// The reference upstream: `SLOTS` slots behind a FIFO queue, `SERVICE_TIME` per call.
#[derive(Clone)]
struct Upstream {
    slots: Arc<Semaphore>,
    mode: Mode,
    seed: Arc<AtomicU64>,
    start: Instant,
}

impl Upstream {
    fn new(mode: Mode) -> Self {
        Upstream {
            slots: Arc::new(Semaphore::new(SLOTS)),
            mode,
            seed: Arc::new(AtomicU64::new(0x2545_f491_4f6c_dd1d)),
            start: Instant::now(),
        }
    }

    /// A deterministic draw in (0, 1) (xorshift over a shared seed).
    fn unit(&self) -> f64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A deterministic coin with probability 1/4.
    fn unlucky(&self) -> bool {
        self.unit() < 0.25
    }

    /// This call's service time.
    fn service_time(&self) -> Duration {
        match self.mode {
            Mode::Jittery => {
                // Box-Muller, then a lognormal of mean SERVICE_TIME.
                let (u, v) = (self.unit(), self.unit());
                let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                let sigma = 0.5;
                let mu = SERVICE_TIME.as_secs_f64().ln() - sigma * sigma / 2.0;
                Duration::from_secs_f64((mu + sigma * normal).exp())
            }
            Mode::Slowdown if self.start.elapsed() >= Duration::from_secs(5) => SERVICE_TIME * 2,
            _ => SERVICE_TIME,
        }
    }
}

impl Service<()> for Upstream {
    type Response = ();
    type Error = &'static str;
    type Future = Pin<Box<dyn Future<Output = Result<(), &'static str>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        let mode = self.mode;
        let fail_fast = match mode {
            Mode::DeadFast => true,
            Mode::Brownout => self.unlucky(),
            _ => false,
        };
        let retried_after = (mode == Mode::BrownoutRetried && self.unlucky())
            .then(|| Duration::from_secs_f64(0.1 * self.unit()));
        let slots = Arc::clone(&self.slots);
        let service_time = self.service_time();
        Box::pin(async move {
            if fail_fast {
                tokio::time::sleep(Duration::from_millis(1)).await;
                return Err("unavailable");
            }
            if let Some(backoff) = retried_after {
                // The failed attempt takes a slot for its service time, like a served one.
                let slot = slots.acquire().await.expect("never closed");
                tokio::time::sleep(service_time).await;
                drop(slot);
                tokio::time::sleep(backoff).await;
            }
            if mode == Mode::DeadHanging {
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Err("timed out");
            }
            let _slot = slots.acquire_owned().await.expect("never closed");
            tokio::time::sleep(service_time).await;
            Ok(())
        })
    }
}

/// What one run measured (over requests sent after the warm-up).
#[derive(Debug, Default)]
struct Report {
    sent: u64,
    ok: u64,
    failed: u64,
    refused: u64,
    /// Latencies of the successful calls, sorted.
    latencies: Vec<Duration>,
    /// The limit at the end of the run, and the lowest it went after the warm-up.
    final_limit: u32,
    lowest_limit: u32,
    /// Calls that reached the upstream (the breaker below the limiter would see these).
    reached_upstream: u64,
    /// The longest a refused request waited for its refusal.
    slowest_refusal: Duration,
    measured: Duration,
}

impl Report {
    fn goodput(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }

    fn print(&self, label: &str) {
        println!(
            "{label}: goodput {:.1}/s, p50 {:?}, p99 {:?}, refused {}, failed {}, \
             reached upstream {}, limit at end {}, lowest {}",
            self.goodput(),
            self.percentile(0.5),
            self.percentile(0.99),
            self.refused,
            self.failed,
            self.reached_upstream,
            self.final_limit,
            self.lowest_limit,
        );
    }
}

/// An upstream wrapper counting the calls that got past the limiter.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    calls: Arc<AtomicU64>,
}

impl<S: Service<()>> Service<()> for Counted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ()) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.call(req)
    }
}

/// Offers `rate` requests/s for `run` (one task per request, an open loop) to `mode`'s
/// upstream behind a limiter with `config`; measures the requests sent after `warm_up`.
async fn run(
    config: ConcurrencyConfig,
    mode: Mode,
    rate: u32,
    warm_up: Duration,
    run: Duration,
) -> Report {
    let layer = ConcurrencyLimitLayer::from_config(&config).unwrap();
    let limiter: ConcurrencyLimiter = layer.handle().clone();
    let calls = Arc::new(AtomicU64::new(0));
    let svc = layer.layer(Counted {
        inner: Upstream::new(mode),
        calls: Arc::clone(&calls),
    });
    let report = Arc::new(Mutex::new(Report {
        lowest_limit: u32::MAX,
        measured: run - warm_up,
        ..Report::default()
    }));
    let start = Instant::now();
    let period = Duration::from_secs(1) / rate;
    let total = u64::from(rate) * run.as_secs();
    let mut tasks = Vec::with_capacity(total as usize);
    let mut calls_at_warm_up = None;
    for i in 0..total {
        let at = start + period * i as u32;
        tokio::time::sleep_until(at).await;
        let measured = at - start >= warm_up;
        if measured {
            calls_at_warm_up.get_or_insert_with(|| calls.load(Ordering::Relaxed));
            let mut r = report.lock().unwrap();
            r.lowest_limit = r.lowest_limit.min(limiter.snapshot().limit);
        }
        let mut svc = svc.clone();
        let report = Arc::clone(&report);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let result = svc.ready().await.unwrap().call(()).await;
            if !measured {
                return;
            }
            let mut r = report.lock().unwrap();
            r.sent += 1;
            match result {
                Ok(()) => {
                    r.ok += 1;
                    r.latencies.push(sent.elapsed());
                }
                Err(e) if e.is::<Error>() => {
                    r.refused += 1;
                    r.slowest_refusal = r.slowest_refusal.max(sent.elapsed());
                }
                Err(_) => r.failed += 1,
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut r = Arc::try_unwrap(report).unwrap().into_inner().unwrap();
    r.latencies.sort();
    r.final_limit = limiter.snapshot().limit;
    r.reached_upstream = calls.load(Ordering::Relaxed) - calls_at_warm_up.unwrap_or(0);
    r
}

const OVERLOAD: u32 = 800;
const NORMAL: u32 = 320;

fn old_default() -> ConcurrencyConfig {
    ConcurrencyConfig::builder()
        .algorithm(LimitAlgorithm::Aimd(AimdConfig::default()))
        .build()
        .unwrap()
}

fn gradient() -> ConcurrencyConfig {
    ConcurrencyConfig::builder()
        .algorithm(GradientConfig::default())
        .build()
        .unwrap()
}

const WARM_UP: Duration = Duration::from_secs(2);
const RUN: Duration = Duration::from_secs(10);

/// Under 2x overload: goodput at capacity, p99 within 2x of the unloaded p99, the excess
/// refused at once.
async fn overload(config: &ConcurrencyConfig) -> Result<(), String> {
    let unloaded = run(config.clone(), Mode::Healthy, NORMAL, WARM_UP, RUN).await;
    let r = run(config.clone(), Mode::Healthy, OVERLOAD, WARM_UP, RUN).await;
    r.print("overload");
    let capacity = SLOTS as f64 / SERVICE_TIME.as_secs_f64();
    if r.goodput() < 0.97 * capacity {
        return Err(format!(
            "goodput {:.1}/s under 97 % of capacity",
            r.goodput()
        ));
    }
    let (p99, base) = (r.percentile(0.99), unloaded.percentile(0.99));
    if p99 > base * 2 {
        return Err(format!("p99 {p99:?} over twice the unloaded {base:?}"));
    }
    if r.slowest_refusal > Duration::ZERO {
        return Err(format!("a refusal waited {:?}", r.slowest_refusal));
    }
    Ok(())
}

/// In a full outage the limit stays at or above its initial value (20 by default): every
/// fast failure still reaches the service (and the breaker in front of it), and calls that
/// hang keep `initial_limit` calls in flight, 20 a second for a 1 s timeout.
async fn outage(config: &ConcurrencyConfig) -> Result<(), String> {
    let floor = config.initial_limit;
    let fast = run(config.clone(), Mode::DeadFast, NORMAL, WARM_UP, RUN).await;
    fast.print("outage, fast errors");
    if fast.lowest_limit < floor || fast.reached_upstream < fast.sent {
        return Err(format!(
            "fast errors: limit fell to {}, {} of {} calls reached the service",
            fast.lowest_limit, fast.reached_upstream, fast.sent
        ));
    }
    let hang = run(config.clone(), Mode::DeadHanging, NORMAL, WARM_UP, RUN).await;
    hang.print("outage, hanging calls");
    let fed = u64::from(floor) * (RUN - WARM_UP).as_secs();
    if hang.lowest_limit < floor || hang.reached_upstream < fed {
        return Err(format!(
            "hanging calls: limit fell to {}, {} calls reached the service (want {fed})",
            hang.lowest_limit, hang.reached_upstream
        ));
    }
    Ok(())
}

/// In a brownout (25 % fast failures, 80 % of capacity offered) nothing is shed. With the
/// failed calls retried below the limiter (slow successes), the service runs at its full
/// capacity with a queue, and at most 1 % is shed: the limit keeps that queue short.
async fn brownout(config: &ConcurrencyConfig) -> Result<(), String> {
    for (mode, allowed) in [(Mode::Brownout, 0), (Mode::BrownoutRetried, 25)] {
        let r = run(config.clone(), mode, NORMAL, WARM_UP, RUN).await;
        r.print(&format!("{mode:?}"));
        if r.refused > allowed || r.lowest_limit < 10 {
            return Err(format!(
                "{mode:?}: shed {} requests; the limit fell to {}",
                r.refused, r.lowest_limit
            ));
        }
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn default_keeps_latency_low_at_full_goodput_under_2x_overload() {
    overload(&ConcurrencyConfig::default()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn default_neither_collapses_nor_hides_an_outage() {
    outage(&ConcurrencyConfig::default()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn default_sheds_nothing_in_a_brownout() {
    brownout(&ConcurrencyConfig::default()).await.unwrap();
}

/// The checks above fail on the old default, AIMD without a latency threshold (p50 = p99 =
/// 500 ms under overload with the limit at 200; a limit of 1 in an outage, with 8 calls of
/// 2,560 reaching a hanging service; a limit of 5 and a call shed in the brownout), and on
/// the gradient (p99 205 ms under overload; a limit of 1 in an outage; 291 calls shed in the
/// brownout).
#[tokio::test(start_paused = true)]
async fn old_default_and_gradient_fail_the_checks() {
    assert!(overload(&old_default()).await.is_err());
    assert!(outage(&old_default()).await.is_err());
    assert!(brownout(&old_default()).await.is_err());
    assert!(overload(&gradient()).await.is_err());
    assert!(outage(&gradient()).await.is_err());
    assert!(brownout(&gradient()).await.is_err());
}

/// Prints every algorithm's figures in every scenario (for the docs' before/after table).
#[tokio::test(start_paused = true)]
#[ignore = "prints figures; run with --ignored --nocapture"]
async fn figures() {
    let warm = Duration::from_secs(2);
    let secs = Duration::from_secs(10);
    for (label, config) in [
        ("default", ConcurrencyConfig::default()),
        ("aimd (old default)", old_default()),
        ("gradient", gradient()),
        ("fixed 8", ConcurrencyConfig::fixed(8)),
        ("fixed 16", ConcurrencyConfig::fixed(16)),
    ] {
        println!("--- {label}");
        run(config.clone(), Mode::Healthy, NORMAL, warm, secs)
            .await
            .print("unloaded 320/s");
        run(config.clone(), Mode::Healthy, OVERLOAD, warm, secs)
            .await
            .print("overload 800/s");
        run(config.clone(), Mode::DeadFast, NORMAL, warm, secs)
            .await
            .print("outage, fast errors");
        run(config.clone(), Mode::DeadHanging, NORMAL, warm, secs)
            .await
            .print("outage, hanging calls");
        run(config.clone(), Mode::Brownout, NORMAL, warm, secs)
            .await
            .print("brownout 25 %");
        run(config.clone(), Mode::BrownoutRetried, NORMAL, warm, secs)
            .await
            .print("brownout 25 %, retried below");
        run(config.clone(), Mode::Jittery, NORMAL, warm, secs)
            .await
            .print("lognormal service, 320/s");
        run(config.clone(), Mode::Jittery, OVERLOAD, warm, secs)
            .await
            .print("lognormal service, 800/s");
        run(
            config.clone(),
            Mode::Healthy,
            OVERLOAD,
            Duration::ZERO,
            secs,
        )
        .await
        .print("overload 800/s from the first second");
        run(
            config.clone(),
            Mode::Slowdown,
            OVERLOAD,
            Duration::from_secs(6),
            secs,
        )
        .await
        .print("2x slower from 5 s, 800/s, from 6 s");
    }
}
