//! The retry budget's defaults against the reference upstream of issue 15, in paused time:
//! 8 slots of 20 ms (400 calls/s of capacity) served in FIFO order, behind a retry stage
//! with default settings, offered an open-loop 320 calls/s (or 800 calls/s, twice the
//! capacity) for 20 s.
//!
//! - Brownout: a quarter of the calls fail at random (seeded). Retries should recover most
//!   of the failed first attempts.
//! - Outage: every call fails at once (connection refused). Retries should add at most
//!   10 % to the load (amplification, attempts per call, at most 1.1).
//!
//! `cargo test -p tower-prism-retry --test budget_defaults -- --ignored --nocapture`
//! prints the figures for the candidate defaults compared when the default was chosen.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tower::{service_fn, BoxError, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::internal::mix64;
use tower_prism_retry::{BudgetConfig, Error, RetryConfig, RetryLayer};

const SLOTS: usize = 8;
const SERVICE_TIME: Duration = Duration::from_millis(20);
const RUN: Duration = Duration::from_secs(20);

/// What the upstream does with a call.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// This fraction of calls fails at random after being served.
    Brownout(f64),
    /// Every call fails at once.
    Outage,
}

/// The upstream's view of a run.
#[derive(Default)]
struct Upstream {
    attempts: AtomicU64,
    first_failures: AtomicU64,
    seen: Mutex<HashSet<u64>>,
}

/// What a run measured.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    calls: u64,
    successes: u64,
    attempts: u64,
    /// Calls whose first attempt failed.
    first_failures: u64,
    budget_exhausted: u64,
    retries_exhausted: u64,
}

impl Figures {
    fn success_rate(&self) -> f64 {
        self.successes as f64 / self.calls as f64
    }
    /// Failed first attempts that a retry turned into a success.
    fn recovered(&self) -> f64 {
        let first_successes = self.calls - self.first_failures;
        (self.successes - first_successes) as f64 / self.first_failures.max(1) as f64
    }
    fn amplification(&self) -> f64 {
        self.attempts as f64 / self.calls as f64
    }
}

/// Offers `rate` calls/s for [`RUN`] to the upstream behind a default retry stage with
/// `budget`, and waits for every call to end.
async fn run(rate: u32, fault: Fault, budget: BudgetConfig) -> Figures {
    let config = RetryConfig::builder().budget(budget).build().unwrap();
    let layer = RetryLayer::from_config(&config).unwrap();
    let upstream = Arc::new(Upstream::default());
    let slots = Arc::new(Semaphore::new(SLOTS));
    let svc = {
        let upstream = upstream.clone();
        service_fn(move |id: u64| {
            let upstream = upstream.clone();
            let slots = slots.clone();
            async move {
                let n = upstream.attempts.fetch_add(1, Ordering::Relaxed);
                let first = upstream.seen.lock().unwrap().insert(id);
                let fails = match fault {
                    Fault::Outage => true,
                    Fault::Brownout(p) => {
                        let permit = slots.acquire().await.unwrap();
                        tokio::time::sleep(SERVICE_TIME).await;
                        drop(permit);
                        (mix64(n ^ 0x5eed) as f64 / u64::MAX as f64) < p
                    }
                };
                if fails && first {
                    upstream.first_failures.fetch_add(1, Ordering::Relaxed);
                }
                if fails {
                    Err(BoxError::from("upstream failed"))
                } else {
                    Ok(id)
                }
            }
        })
    };
    let svc = layer.layer(svc);
    let gap = Duration::from_secs(1) / rate;
    let calls = u64::from(rate) * RUN.as_secs();
    let mut tick = tokio::time::interval(gap);
    let mut tasks = Vec::with_capacity(calls as usize);
    for id in 0..calls {
        tick.tick().await;
        tasks.push(tokio::spawn(svc.clone().oneshot(id)));
    }
    let mut figures = Figures {
        calls,
        ..Figures::default()
    };
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => figures.successes += 1,
            Err(e) => match e.downcast_ref::<Error>() {
                Some(Error::BudgetExhausted { .. }) => figures.budget_exhausted += 1,
                Some(Error::RetriesExhausted { .. }) => figures.retries_exhausted += 1,
                _ => {}
            },
        }
    }
    figures.attempts = upstream.attempts.load(Ordering::Relaxed);
    figures.first_failures = upstream.first_failures.load(Ordering::Relaxed);
    figures
}

/// The default budget of 0.1: 20 % of first attempts plus 10 retries per second.
fn old_default() -> BudgetConfig {
    BudgetConfig::builder()
        .ratio(0.2)
        .success_ratio(0.0)
        .min_per_second(10)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
#[ignore = "prints the figures of the candidate budgets; run with --ignored --nocapture"]
async fn compare_candidate_budgets() {
    let per_attempt = |ratio: f64, floor: u32| {
        BudgetConfig::builder()
            .ratio(ratio)
            .success_ratio(0.0)
            .min_per_second(floor)
            .build()
            .unwrap()
    };
    let per_success = |ratio: f64, floor: u32| {
        BudgetConfig::builder()
            .success_ratio(ratio)
            .min_per_second(floor)
            .build()
            .unwrap()
    };
    let candidates: Vec<(String, BudgetConfig)> = vec![
        (
            "0.2 per first attempt + 10/s (old default)".into(),
            old_default(),
        ),
        (
            "0.35 per first attempt + 10/s".into(),
            per_attempt(0.35, 10),
        ),
        (
            "0.05 per first attempt + 10/s".into(),
            per_attempt(0.05, 10),
        ),
        ("0.2 per success + 10/s".into(), per_success(0.2, 10)),
        ("0.35 per success + 10/s".into(), per_success(0.35, 10)),
        (
            "0.5 per success + 10/s (new default)".into(),
            BudgetConfig::default(),
        ),
        ("1.0 per success + 10/s".into(), per_success(1.0, 10)),
        ("0.5 per success + 20/s".into(), per_success(0.5, 20)),
        ("0.5 per success + 0/s".into(), per_success(0.5, 0)),
        (
            "no budget".into(),
            BudgetConfig::builder().enabled(false).build().unwrap(),
        ),
    ];
    println!(
        "| budget | brownout success | recovered | brownout ampl. | 50 % brownout ampl. | outage ampl. | 2x overload + 25 % ampl. | 2x overload success |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, budget) in candidates {
        let brownout = run(320, Fault::Brownout(0.25), budget.clone()).await;
        let half = run(320, Fault::Brownout(0.5), budget.clone()).await;
        let outage = run(320, Fault::Outage, budget.clone()).await;
        let overload = run(800, Fault::Brownout(0.25), budget.clone()).await;
        println!(
            "| {name} | {:.1} % | {:.1} % | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} % |",
            brownout.success_rate() * 100.0,
            brownout.recovered() * 100.0,
            brownout.amplification(),
            half.amplification(),
            outage.amplification(),
            overload.amplification(),
            overload.success_rate() * 100.0,
        );
        eprintln!("{name}: brownout {brownout:?}\n  outage {outage:?}\n  overload {overload:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn in_a_brownout_retries_recover_most_failed_calls() {
    let brownout = run(320, Fault::Brownout(0.25), BudgetConfig::default()).await;
    // Three attempts can recover at most 1 - 0.25^2 = 93.75 % of the failed first attempts.
    assert!(
        brownout.recovered() >= 0.9 && brownout.budget_exhausted <= 20,
        "{brownout:?}: {:.3} recovered",
        brownout.recovered()
    );
    assert!(brownout.success_rate() >= 0.97, "{brownout:?}");
    // The budget of 0.1 left about 30 % of them unretried.
    let old = run(320, Fault::Brownout(0.25), old_default()).await;
    assert!(old.recovered() < 0.8, "{old:?}");
}

#[tokio::test(start_paused = true)]
async fn in_an_outage_retries_add_at_most_a_tenth_to_the_load() {
    let outage = run(320, Fault::Outage, BudgetConfig::default()).await;
    assert_eq!(outage.successes, 0);
    assert!(outage.amplification() <= 1.1, "{outage:?}");
    // The budget of 0.1 added more than a fifth.
    let old = run(320, Fault::Outage, old_default()).await;
    assert!(old.amplification() > 1.2, "{old:?}");
}
