//! Time jumps under the whole stack: paused tokio time advanced by hours to a year at once,
//! including the lengths where a stage's packed time fields wrap (the retry budget's 20-bit
//! slot epoch, the breaker time window's 10-bit lap tag, 2^32 milliseconds). After a jump
//! the bucket is exactly full, the breaker's time window and the retry budget have forgotten
//! everything older than their windows (and nothing newer), an open breaker probes and
//! closes, and calls are answered.
//!
//! With `clock = "tsc"` the limiter and the breaker read the CPU's counter, which paused
//! tokio time does not move and which a test cannot advance by days: that stack is checked
//! after a few milliseconds of real sleep (see the last test).

use std::time::Duration;

use tower::{BoxError, Service};
use tower_prism::breaker::{State, Window};
use tower_prism::retry::{Backoff, BudgetConfig, RetryConfig};
use tower_prism::Clock;
use tower_prism::PolicyConfig;

use crate::support::flavor::{Flavor, GenericFlavor, HttpFlavor};
use crate::support::rig::{Rig, Stack};
use crate::support::{breaker_config, every_stage_policy, Fault};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Every stage, with a time-window breaker (30 s in 10 slices of 3 s) and a retry budget of
/// half a retry per call with no floor (so only the calls' deposits allow retries).
fn time_policy() -> PolicyConfig {
    let mut policy = every_stage_policy();
    policy.circuit_breaker = Some(
        breaker_config()
            .to_builder()
            .window(Window::Time {
                duration: Duration::from_secs(30),
                buckets: 10,
            })
            .build()
            .unwrap(),
    );
    policy.retry = Some(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::fixed(Duration::from_millis(10)))
            .budget(
                BudgetConfig::builder()
                    .ratio(0.5)
                    .success_ratio(0.0)
                    .min_per_second(0)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap(),
    );
    policy
}

/// `n` answered calls, 20 ms apart.
async fn answered<F: Flavor>(rig: &Rig<F>, n: usize, context: &str)
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    for i in 0..n {
        let result = rig.call().await.expect("no panic");
        assert!(F::answered(&result), "{context}: call {i}: {result:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn budget<F: Flavor>(rig: &Rig<F>) -> f64
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    rig.layer.snapshot().retry.unwrap().budget_available
}

async fn a_jump_forward_by<F: Flavor>(jump: Duration)
where
    Stack<F>: Service<F::Req, Response = F::Res, Error = BoxError> + Clone,
{
    let context = format!("{} after a jump of {jump:?}", std::any::type_name::<F>());
    let rig = Rig::<F>::with(F::builder().policy(time_policy()));

    // Before: eight answered calls earn four retries; three failing calls spend them and
    // leave failures in the breaker's window; the bucket is partly spent.
    answered(&rig, 8, "before").await;
    assert_eq!(budget(&rig), 4.0, "eight calls at half a retry each");
    rig.script.reset(Fault::Fail);
    for _ in 0..3 {
        let _ = rig.call().await.expect("no panic");
    }
    rig.script.reset(Fault::Ok);
    let before = rig.layer.snapshot();
    let breaker = before.circuit_breaker.unwrap();
    assert_eq!((breaker.state, breaker.calls), (State::Closed, 11));

    tokio::time::advance(jump).await;

    // Right after the jump: a full bucket (not more), an empty window, an empty budget.
    let after = rig.layer.snapshot();
    let rate = after.rate_limit.unwrap();
    assert_eq!((rate.tokens, rate.queued), (4, 0), "{context}");
    let breaker = after.circuit_breaker.unwrap();
    assert_eq!(
        (breaker.state, breaker.calls, breaker.failures),
        (State::Closed, 0, 0),
        "{context}: the window forgot the calls of before the jump"
    );
    assert_eq!(
        budget(&rig),
        0.0,
        "{context}: the budget forgot the deposits and withdrawals of before the jump"
    );

    // New calls earn retries again, and a failing attempt is retried.
    answered(&rig, 8, &context).await;
    assert_eq!(
        budget(&rig),
        4.0,
        "{context}: eight calls after the jump earn four retries"
    );
    let retries = rig.layer.snapshot().retry.unwrap().retries;
    rig.script.then([Fault::Fail]);
    answered(&rig, 1, &context).await;
    assert_eq!(rig.layer.snapshot().retry.unwrap().retries, retries + 1);

    // An open breaker across the jump probes and closes.
    rig.trip().await;
    tokio::time::advance(jump).await;
    rig.assert_recovers(5, &context).await;
}

/// A test per profile for one jump length.
macro_rules! jump_test {
    ($(#[$attr:meta])* $generic:ident, $http:ident, $jump:expr) => {
        $(#[$attr])*
        #[tokio::test(start_paused = true)]
        async fn $generic() {
            a_jump_forward_by::<GenericFlavor>($jump).await;
        }

        $(#[$attr])*
        #[tokio::test(start_paused = true)]
        async fn $http() {
            a_jump_forward_by::<HttpFlavor>($jump).await;
        }
    };
}

jump_test!(
    generic_every_stage_survives_a_jump_of_an_hour,
    http_every_stage_survives_a_jump_of_an_hour,
    Duration::from_secs(3600)
);
jump_test!(
    generic_every_stage_survives_a_jump_of_a_day,
    http_every_stage_survives_a_jump_of_a_day,
    DAY
);
// 1024 laps of the breaker's 30 s window: its bucket tags (10 bits) wrap.
jump_test!(
    generic_every_stage_survives_a_jump_of_1024_breaker_window_laps,
    http_every_stage_survives_a_jump_of_1024_breaker_window_laps,
    Duration::from_secs(1024 * 30)
);
// Between 2^19 and 2^20 one-second budget slots (6.1 to 12.1 days), the budget's 20-bit
// slot epochs make stale slots look newer than now.
jump_test!(
    generic_every_stage_survives_a_jump_of_a_week,
    http_every_stage_survives_a_jump_of_a_week,
    7 * DAY
);
jump_test!(
    generic_every_stage_survives_a_jump_of_2_pow_19_budget_slots,
    http_every_stage_survives_a_jump_of_2_pow_19_budget_slots,
    Duration::from_secs((1 << 19) + 1)
);
// 2^20 + 3 one-second slots: the epochs wrap whole, stale slots look current.
jump_test!(
    generic_every_stage_survives_a_jump_of_2_pow_20_budget_slots,
    http_every_stage_survives_a_jump_of_2_pow_20_budget_slots,
    Duration::from_secs((1 << 20) + 3)
);
jump_test!(
    generic_every_stage_survives_a_jump_of_2_pow_32_ms,
    http_every_stage_survives_a_jump_of_2_pow_32_ms,
    Duration::from_millis(1 << 32)
);
jump_test!(
    generic_every_stage_survives_a_jump_of_400_days,
    http_every_stage_survives_a_jump_of_400_days,
    400 * DAY
);

/// A call in flight across a jump of days (its endpoint answers after two days): it is
/// answered, counted as one slow call, and nothing is left behind.
#[tokio::test(start_paused = true)]
async fn a_call_in_flight_across_a_jump_of_days_is_answered() {
    let rig = Rig::<GenericFlavor>::with(GenericFlavor::builder().policy(time_policy()));
    rig.script.then([Fault::Slow(2 * DAY)]);
    let call = tokio::spawn(tower::ServiceExt::oneshot(rig.service.clone(), 7));
    tokio::time::sleep(Duration::from_millis(10)).await;
    tokio::time::advance(3 * DAY).await;
    assert_eq!(call.await.unwrap().unwrap(), 7);
    let breaker = rig.layer.snapshot().circuit_breaker.unwrap();
    assert_eq!(
        (breaker.state, breaker.calls, breaker.slow_calls),
        (State::Closed, 1, 1),
        "{breaker:?}"
    );
    rig.assert_quiet("after a call across a jump");
    rig.assert_recovers(5, "after a call across a jump").await;
}

/// `clock = "tsc"` for the limiter and the breaker: a TSC clock cannot be paused or moved
/// by days from a test, so this checks what real time allows. The stack admits a burst,
/// refills within milliseconds of real sleep, trips, and closes after its (20 ms) open
/// wait. (Jumps of days on the TSC would need a machine suspended for days; the clock's own
/// arithmetic is the core crate's concern.)
#[tokio::test]
async fn a_tsc_clock_stack_refills_and_recovers_in_real_time() {
    let mut policy = every_stage_policy();
    let rate = policy.rate_limit.as_mut().unwrap();
    rate.clock = Clock::Tsc;
    rate.rate = 1_000; // a token per millisecond, burst 4
    policy.circuit_breaker = Some(
        breaker_config()
            .to_builder()
            .wait_duration(Duration::from_millis(20))
            .clock(Clock::Tsc)
            .build()
            .unwrap(),
    );
    let rig = Rig::<GenericFlavor>::with(GenericFlavor::builder().policy(policy));
    answered(&rig, 4, "tsc").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rig.layer.snapshot().rate_limit.unwrap().tokens, 4);

    rig.trip().await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    rig.assert_recovers(5, "tsc, after the open wait").await;
}

/// The adaptive rate limit follows the health the balancer publishes: failures lower it;
/// across a jump of a week it is not left stuck at its floor, and healthy calls raise it
/// again. (No breaker here: an open circuit holds the rate instead of lowering it.)
#[tokio::test(start_paused = true)]
async fn the_adaptive_rate_recovers_across_a_jump_of_a_week() {
    let mut policy = time_policy();
    policy.circuit_breaker = None;
    let rate = policy.rate_limit.as_mut().unwrap();
    rate.rate = 1_000;
    rate.burst = Some(50);
    rate.adaptive = Some(
        toml::from_str(
            r#"
            min_rate = 50
            max_rate = 1000
            interval = "50ms"
            failure_rate_threshold = 0.5
            decrease_factor = 0.5
            increase_step = 100
            min_calls = 5
            "#,
        )
        .unwrap(),
    );
    let rig = Rig::<GenericFlavor>::with(GenericFlavor::builder().policy(policy));
    let rate = || rig.layer.snapshot().rate_limit.unwrap().rate_per_second;
    rig.script.reset(Fault::Fail);
    drive(&rig, Duration::from_millis(500)).await;
    let cut = rate();
    assert!(cut < 1_000.0, "failures lowered the rate: {cut}");

    tokio::time::advance(7 * DAY).await;
    rig.script.reset(Fault::Ok);
    drive(&rig, Duration::from_secs(3)).await;
    let back = rate();
    assert!(
        back > cut,
        "healthy calls after the jump raise the rate: {cut} -> {back}"
    );
    rig.assert_quiet("after the adaptive rate recovered");
}

/// Calls, 5 ms apart, for `time`.
async fn drive(rig: &Rig<GenericFlavor>, time: Duration) {
    let end = tokio::time::Instant::now() + time;
    while tokio::time::Instant::now() < end {
        let _ = rig.call().await.expect("no panic");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
