//! Cancellation at any poll, as a seeded property test over the whole stack (rate limit with
//! a queue -> concurrency limit with waiting -> breaker -> retry with backoff -> round robin
//! over three endpoints), in the `Generic` and `.http()` profiles.
//!
//! Each case runs a random program against a fresh stack whose endpoints follow a random
//! script (answer or fail, at once or after up to 300 ms, or never): start calls, poll them
//! a few times with paused time advanced by random amounts in between, drop them wherever
//! they are (before the first poll, queued in the limiter, waiting for a concurrency permit,
//! mid-attempt, in a retry's backoff, as a half-open probe). Afterwards every counter must be
//! back at its baseline: nothing queued, no permit held or waiter left, no probe admitted
//! and unfinished, no request in flight on an endpoint, no live inner future; once time has
//! passed the bucket is full and the retry budget is back to its floor (no withdrawal
//! outlives its window); and healthy calls are answered and close the breaker.
//!
//! Deterministic: case `n` uses seed `n` (SplitMix64, no proptest in the root package's
//! dev-dependencies). `FAULT_SUITE_CASES=<n>` runs more cases, `FAULT_SUITE_SEED=<s>` one.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tower::util::Oneshot;
use tower::{BoxError, Service, ServiceExt};
use tower_prism::balance::Strategy;
use tower_prism::breaker::State;
use tower_prism::limit::concurrency::ConcurrencyConfig;
use tower_prism::retry::{Backoff, BudgetConfig};
use tower_prism::PolicyConfig;

use crate::support::flavor::{Flavor, GenericFlavor, HttpFlavor};
use crate::support::rig::{Rig, Stack};
use crate::support::{breaker_config, every_stage_policy, poll_once, Fault, Rng};

/// One step of a case's program.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Start a call (not polled yet).
    Start,
    /// Poll call `index % live` `polls` times, advancing time by `step_ms` before each poll.
    Poll {
        index: usize,
        polls: u32,
        step_ms: u64,
    },
    /// Advance time by `step_ms`, then poll every live call once (a burst of arrivals).
    PollAll { step_ms: u64 },
    /// Drop call `index % live`.
    Drop { index: usize },
    /// Let time pass with nothing polled.
    Wait { ms: u64 },
    /// Hot-reload config number `variant` (see [`reloaded_policy`]).
    Reload { variant: u32 },
}

/// Runs of one fault (so failures come in streaks that can trip the breaker).
fn random_script(rng: &mut Rng) -> Vec<Fault> {
    let mut faults = Vec::new();
    while faults.len() < 300 {
        let after = Duration::from_millis(1 + rng.below(300));
        let fault = match rng.below(10) {
            0..=2 => Fault::Ok,
            3 | 4 => Fault::Fail,
            5 => Fault::Slow(after),
            6 | 7 => Fault::SlowFail(after),
            _ => Fault::Hang,
        };
        let run = 1 + rng.below(12) as usize;
        faults.extend(std::iter::repeat_n(fault, run));
    }
    faults
}

/// A short or (less often) a long step of time.
fn random_step(rng: &mut Rng) -> u64 {
    if rng.below(10) < 7 {
        rng.below(10)
    } else {
        rng.below(400)
    }
}

fn random_program(rng: &mut Rng, reloads: bool) -> Vec<Op> {
    let len = 10 + rng.below(50) as usize;
    (0..len)
        .map(|_| match rng.below(20) {
            19 if reloads => Op::Reload {
                variant: rng.below(1_000) as u32,
            },
            18 if reloads => Op::Reload {
                variant: rng.below(1_000) as u32,
            },
            0..=4 => Op::Start,
            5..=10 => Op::Poll {
                index: rng.below(64) as usize,
                polls: 1 + rng.below(4) as u32,
                step_ms: random_step(rng),
            },
            11..=13 => Op::PollAll {
                step_ms: random_step(rng),
            },
            14..=17 => Op::Drop {
                index: rng.below(64) as usize,
            },
            _ => Op::Wait {
                ms: rng.below(1_500),
            },
        })
        .collect()
}

/// Every stage, with a retry budget whose window (10 minutes) outlasts a case, a floor of
/// one retry per second and a fifth of a retry per call, so that its balance can be checked
/// exactly: the floor, plus a fifth per first attempt, minus one per retry sent.
fn long_budget_policy() -> PolicyConfig {
    let mut policy = every_stage_policy();
    let retry = policy.retry.as_mut().unwrap();
    retry.budget = BudgetConfig::builder()
        .ratio(0.2)
        .success_ratio(0.0)
        .min_per_second(1)
        .window(BUDGET_WINDOW)
        .build()
        .unwrap();
    policy
}

const BUDGET_WINDOW: Duration = Duration::from_secs(600);

/// Asserts the budget holds the floor plus the deposits of the first attempts minus the
/// retries sent: no grant for a retry that was planned and then dropped is kept.
#[track_caller]
fn assert_budget_balanced<F: Flavor>(rig: &Rig<F>, context: &str)
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    let retry = rig.layer.snapshot().retry.unwrap();
    let sent = retry.retries;
    let first_attempts = rig.script.calls() - sent;
    let expected = BUDGET_WINDOW.as_secs_f64() + 0.2 * first_attempts as f64 - sent as f64;
    assert!(
        (retry.budget_available - expected).abs() < 1e-6,
        "{context}: the budget holds {} retries; {first_attempts} first attempts and {sent} \
         retries sent leave {expected}",
        retry.budget_available
    );
}

type Call<F> = Pin<Box<Oneshot<Stack<F>, <F as Flavor>::Req>>>;

/// Runs case `seed`; panics (naming the seed and the program) if anything is left behind.
async fn run_case<F: Flavor>(seed: u64, reloads: bool)
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    let mut rng = Rng::new(seed);
    let rig = Rig::<F>::with(F::builder().policy(long_budget_policy()));
    let faults = random_script(&mut rng);
    rig.script.then(faults.iter().copied());
    let program = random_program(&mut rng, reloads);
    let context = format!(
        "{} case seed {seed}: program {program:?}, endpoint script {faults:?}",
        std::any::type_name::<F>()
    );
    let baseline = rig.layer.snapshot();

    let mut calls: Vec<Call<F>> = Vec::new();
    for op in &program {
        match *op {
            Op::Start => calls.push(Box::pin(rig.service.clone().oneshot(F::request()))),
            Op::Poll {
                index,
                polls,
                step_ms,
            } if !calls.is_empty() => {
                let i = index % calls.len();
                for _ in 0..polls {
                    tokio::time::advance(Duration::from_millis(step_ms)).await;
                    if let Poll::Ready(_result) = poll_once(&mut calls[i]) {
                        // Any answer or error is fine here; what is left behind is not.
                        drop(calls.swap_remove(i));
                        break;
                    }
                }
            }
            Op::PollAll { step_ms } => {
                tokio::time::advance(Duration::from_millis(step_ms)).await;
                calls.retain_mut(|call| poll_once(call).is_pending());
            }
            Op::Drop { index } if !calls.is_empty() => {
                let i = index % calls.len();
                drop(calls.swap_remove(i));
            }
            Op::Wait { ms } => tokio::time::advance(Duration::from_millis(ms)).await,
            Op::Reload { variant } => rig.layer.reconfigure(&reloaded_policy(variant)).unwrap(),
            Op::Poll { .. } | Op::Drop { .. } => {}
        }
    }
    drop(calls);
    rig.assert_quiet(&context);
    assert_budget_balanced(&rig, &context);

    // Time passes: the bucket refills to its burst and the retry budget's window forgets
    // every deposit and withdrawal of the case.
    tokio::time::advance(BUDGET_WINDOW + Duration::from_secs(61)).await;
    let rested = rig.layer.snapshot();
    let rate = rested.rate_limit.unwrap();
    assert_eq!(
        (rate.tokens, rate.queued),
        (u64::from(rate.burst), 0),
        "{context}"
    );
    let (retry, base_retry) = (rested.retry.unwrap(), baseline.retry.unwrap());
    assert_eq!(
        retry.budget_available, base_retry.budget_available,
        "{context}: the retry budget does not come back to its floor"
    );
    let concurrency = rested.concurrency_limit.unwrap();
    if !reloads {
        assert_eq!(
            concurrency,
            baseline.concurrency_limit.unwrap(),
            "{context}"
        );
    }
    let breaker = rested.circuit_breaker.unwrap();
    assert!(
        breaker.state != State::HalfOpen || breaker.probes_admitted == breaker.calls,
        "{context}: {breaker:?}"
    );

    // The breaker may be open after a run of failures; it must let healthy calls close it.
    rig.assert_recovers(4, &context).await;
}

/// The seeds to run: `FAULT_SUITE_SEED` alone, or `0..FAULT_SUITE_CASES` (default `cases`).
fn seeds(cases: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("FAULT_SUITE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let cases = std::env::var("FAULT_SUITE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    (0..cases).collect()
}

async fn run_cases<F: Flavor>(reloads: bool)
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    for seed in seeds(64) {
        run_case::<F>(seed, reloads).await;
    }
}

#[tokio::test(start_paused = true)]
async fn generic_calls_dropped_at_random_polls_leave_nothing_behind() {
    run_cases::<GenericFlavor>(false).await;
}

#[tokio::test(start_paused = true)]
async fn http_calls_dropped_at_random_polls_leave_nothing_behind() {
    run_cases::<HttpFlavor>(false).await;
}

/// The same, with hot reloads of every stage (limits, queue, thresholds, probes, attempts,
/// backoff, strategy) arriving between the polls, while calls sit in every state.
#[tokio::test(start_paused = true)]
async fn generic_calls_dropped_at_random_polls_amid_reloads_leave_nothing_behind() {
    run_cases::<GenericFlavor>(true).await;
}

#[tokio::test(start_paused = true)]
async fn http_calls_dropped_at_random_polls_amid_reloads_leave_nothing_behind() {
    run_cases::<HttpFlavor>(true).await;
}

/// Config number `variant` for the reloads: every stage's limits and behaviour move
/// (outlier ejection goes on and off), the retry budget's settings stay (so its balance
/// can still be checked exactly).
fn reloaded_policy(variant: u32) -> PolicyConfig {
    let v = variant;
    let mut policy = long_budget_policy();
    let rate = policy.rate_limit.as_mut().unwrap();
    rate.rate = 50 + v % 450;
    rate.burst = Some(1 + v % 8);
    rate.queue_size = (v % 5) as usize;
    rate.max_wait =
        (rate.queue_size > 0).then(|| Duration::from_millis(10 + u64::from(v % 7) * 30));
    policy.concurrency_limit = Some({
        let mut c = ConcurrencyConfig::fixed(1 + v % 5);
        c.max_wait =
            (!v.is_multiple_of(3)).then(|| Duration::from_millis(10 + u64::from(v % 4) * 20));
        c
    });
    policy.circuit_breaker = Some(
        breaker_config()
            .to_builder()
            .minimum_calls(2 + v % 5)
            .failure_rate_threshold(0.3 + f64::from(v % 6) * 0.1)
            .wait_duration(Duration::from_millis(100 * u64::from(1 + v % 10)))
            .permitted_calls_in_half_open(1 + v % 4)
            .build()
            .unwrap(),
    );
    let retry = policy.retry.as_mut().unwrap();
    retry.max_attempts = 1 + v % 4;
    retry.backoff = Backoff::fixed(Duration::from_millis(1 + u64::from(v % 50)));
    let balance = policy.balance.as_mut().unwrap();
    balance.strategy = [
        Strategy::RoundRobin,
        Strategy::LeastRequests,
        Strategy::P2cPeakEwma,
    ][(v % 3) as usize];
    // Outlier ejection on in half the configs: at most one endpoint of three ejected.
    balance.outlier.enabled = v.is_multiple_of(2);
    balance.outlier.consecutive_failures = 2 + v % 4;
    balance.outlier.max_ejection_percent = 34;
    policy
}

/// The places a call can be dropped, each reached on purpose once (the random programs
/// reach them by chance): queued in the rate limiter, waiting for a concurrency permit,
/// in a retry's backoff, mid-attempt as a half-open probe.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_at_each_stage_leaves_nothing_behind() {
    type F = GenericFlavor;
    let rig = Rig::<F>::new();
    let start = || Box::pin(rig.service.clone().oneshot(F::request()));

    // Queued in the rate limiter: the burst (4) is spent by hung calls, the fifth queues.
    rig.script.reset(Fault::Hang);
    let mut hung: Vec<_> = (0..3).map(|_| start()).collect();
    for call in &mut hung {
        assert!(poll_once(call).is_pending());
    }
    assert_eq!(rig.layer.snapshot().concurrency_limit.unwrap().in_flight, 3);
    // The fourth takes the last token and waits for a concurrency permit.
    let mut waiting = start();
    assert!(poll_once(&mut waiting).is_pending());
    assert_eq!(rig.layer.snapshot().concurrency_limit.unwrap().waiting, 1);
    let mut queued = start();
    assert!(poll_once(&mut queued).is_pending());
    assert_eq!(rig.layer.snapshot().rate_limit.unwrap().queued, 1);
    drop(queued);
    assert_eq!(rig.layer.snapshot().rate_limit.unwrap().queued, 0);
    drop(waiting);
    assert_eq!(rig.layer.snapshot().concurrency_limit.unwrap().waiting, 0);
    drop(hung);
    rig.assert_quiet("after dropping queued, waiting and hung calls");

    // In a retry's backoff: the first attempt failed, the retry waits 10 ms. The retry
    // was never sent, so the budget keeps nothing for it: it gained the call's deposit.
    tokio::time::advance(Duration::from_secs(1)).await;
    rig.script.reset(Fault::Ok);
    rig.script.then([Fault::Fail]);
    let budget = || rig.layer.snapshot().retry.unwrap().budget_available;
    let before = budget();
    let mut backing_off = start();
    assert!(poll_once(&mut backing_off).is_pending());
    assert_eq!(rig.script.calls(), 4, "the first attempt was made");
    assert!(
        budget() < before,
        "the planned retry holds a grant from the budget"
    );
    drop(backing_off);
    tokio::time::advance(Duration::from_millis(50)).await;
    assert_eq!(rig.script.calls(), 4, "no attempt after the drop");
    assert_eq!(rig.layer.snapshot().retry.unwrap().retries, 0);
    assert!(
        (budget() - (before + 0.2)).abs() < 1e-9,
        "the grant came back: {before} + 0.2 != {}",
        budget()
    );
    rig.assert_quiet("after dropping a call in its backoff");

    // Mid-attempt, as a half-open probe.
    rig.trip_and_wait().await;
    rig.script.reset(Fault::Slow(Duration::from_secs(1)));
    let mut probe = start();
    assert!(poll_once(&mut probe).is_pending());
    let breaker = rig.layer.snapshot().circuit_breaker.unwrap();
    assert_eq!(
        (breaker.state, breaker.probes_admitted),
        (State::HalfOpen, 1)
    );
    drop(probe);
    rig.assert_quiet("after dropping a probe mid-attempt");
    rig.assert_healthy(4, "after the drops").await;
}
