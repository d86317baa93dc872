//! Recovery after an outage, in paused time, against the reference upstream of issue 15:
//! 320 requests/s offered to an upstream answering in 20 ms, dead from t = 10 s to
//! t = 20 s. How soon the defaults let the recovered upstream back in, how many calls
//! they send to the dead one, and how an upstream's `Retry-After` sets the open wait.
//!
//! `cargo test -p tower-prism-breaker --test recovery -- --ignored --nocapture` prints
//! the trade-off table of candidate settings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{sleep, Instant, MissedTickBehavior};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer, State};

const RATE_PER_SEC: u64 = 320;
const SERVICE_TIME: Duration = Duration::from_millis(20);
const OUTAGE_START: Duration = Duration::from_secs(10);

/// What one run saw, each time measured from the event it follows.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    /// From the outage's start to the circuit's first opening.
    tripped_after: Option<Duration>,
    /// Calls that reached the dead upstream after the circuit first opened (probes).
    probes_to_dead: u64,
    /// Calls that reached the dead upstream in all.
    calls_to_dead: u64,
    /// From the outage's end to the first call that succeeded.
    first_success_after: Option<Duration>,
    /// From the outage's end to the circuit closing.
    closed_after: Option<Duration>,
    /// Calls that failed although they were sent after the upstream's return: the goodput
    /// the breaker costs against no protection.
    lost_after_return: u64,
}

/// Drives 320 requests/s through a breaker with `config` until `outage_end + 10 s`; the
/// upstream fails every call that starts in [10 s, `outage_end`).
async fn simulate(config: &BreakerConfig, outage_end: Duration) -> Run {
    let start = Instant::now();
    let run = Arc::new(Mutex::new(Run::default()));
    let layer = CircuitBreakerLayer::from_config(config).unwrap();
    let breaker = layer.handle().clone();
    let upstream = {
        let run = run.clone();
        let breaker = breaker.clone();
        service_fn(move |()| {
            let at = start.elapsed();
            let dead = (OUTAGE_START..outage_end).contains(&at);
            if dead {
                let mut r = run.lock().unwrap();
                r.calls_to_dead += 1;
                r.probes_to_dead += u64::from(r.tripped_after.is_some());
            }
            let _ = &breaker;
            async move {
                sleep(SERVICE_TIME).await;
                if dead {
                    Err::<(), BoxError>("upstream down".into())
                } else {
                    Ok(())
                }
            }
        })
    };
    let mut svc = layer.layer(upstream);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SEC));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let stop = outage_end + Duration::from_secs(10);
    loop {
        tick.tick().await;
        let at = start.elapsed();
        if at >= stop {
            break;
        }
        {
            let mut r = run.lock().unwrap();
            let state = breaker.state();
            if at >= OUTAGE_START && r.tripped_after.is_none() && state == State::Open {
                r.tripped_after = Some(at - OUTAGE_START);
            }
            if at >= outage_end && r.closed_after.is_none() && state == State::Closed {
                r.closed_after = Some(at - outage_end);
            }
        }
        let call = svc.ready().await.unwrap().call(());
        let run = run.clone();
        let sent_after_return = at >= outage_end;
        tokio::spawn(async move {
            let ok = call.await.is_ok();
            let at = start.elapsed();
            let mut r = run.lock().unwrap();
            if ok && at >= outage_end && r.first_success_after.is_none() {
                r.first_success_after = Some(at - outage_end);
            }
            r.lost_after_return += u64::from(!ok && sent_after_return);
        });
    }
    sleep(Duration::from_secs(1)).await;
    let r = *run.lock().unwrap();
    r
}

/// The worst of several outages ending at 20 s, 20.25 s ... 21.75 s: the remaining open
/// wait when the upstream returns depends on where in its wait the breaker is.
async fn worst(config: &BreakerConfig) -> (Run, Run, u64) {
    let mut worst = Run::default();
    let mut ten = Run::default();
    let mut lost = 0;
    for quarter in 0..8u64 {
        let end = Duration::from_secs(20) + Duration::from_millis(250 * quarter);
        let r = simulate(config, end).await;
        lost += r.lost_after_return;
        if quarter == 0 {
            ten = r;
        }
        let max = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        worst = Run {
            tripped_after: max(worst.tripped_after.or(r.tripped_after), r.tripped_after),
            probes_to_dead: worst.probes_to_dead.max(r.probes_to_dead),
            calls_to_dead: worst.calls_to_dead.max(r.calls_to_dead),
            first_success_after: max(
                worst.first_success_after.or(r.first_success_after),
                r.first_success_after,
            ),
            closed_after: max(worst.closed_after.or(r.closed_after), r.closed_after),
            lost_after_return: worst.lost_after_return.max(r.lost_after_return),
        };
    }
    (ten, worst, lost / 8)
}

#[tokio::test(start_paused = true)]
async fn defaults_let_a_recovered_upstream_back_within_about_a_second() {
    let (ten, worst, _) = worst(&BreakerConfig::default()).await;
    // trips well within a second of total failure at 320 requests/s
    let tripped = ten.tripped_after.expect("the breaker opened");
    assert!(tripped < Duration::from_millis(200), "{ten:?}");
    // back within about a second of the upstream's return, whenever it returns (the old
    // default, a constant 30 s wait, kept it out for 20 s after a 10 s outage)
    let first = worst.first_success_after.expect("a call succeeded");
    let closed = worst.closed_after.expect("the circuit closed");
    assert!(first <= Duration::from_millis(1_100), "{worst:?}");
    assert!(closed <= Duration::from_millis(1_200), "{worst:?}");
    // without hammering the dead upstream: 3 probes a second, out of 320 calls offered
    assert!(ten.probes_to_dead <= 40, "{ten:?}");
}

#[tokio::test]
#[ignore = "prints the trade-off table; run with --ignored --nocapture"]
async fn table_of_candidate_settings() {
    tokio::time::pause();
    let ms = Duration::from_millis;
    let candidates: Vec<(&str, BreakerConfig)> = vec![
        (
            "30s fixed, 10 probes (old)",
            BreakerConfig::builder()
                .wait_duration(ms(30_000))
                .backoff_multiplier(1.0)
                .permitted_calls_in_half_open(10)
                .build()
                .unwrap(),
        ),
        (
            "5s fixed, 10 probes",
            BreakerConfig::builder()
                .wait_duration(ms(5_000))
                .backoff_multiplier(1.0)
                .permitted_calls_in_half_open(10)
                .build()
                .unwrap(),
        ),
        (
            "1s fixed, 10 probes",
            BreakerConfig::builder()
                .wait_duration(ms(1_000))
                .backoff_multiplier(1.0)
                .permitted_calls_in_half_open(10)
                .build()
                .unwrap(),
        ),
        (
            "1s x2 cap 30s, 10 probes",
            BreakerConfig::builder()
                .wait_duration(ms(1_000))
                .exponential_backoff(2.0, ms(30_000))
                .permitted_calls_in_half_open(10)
                .build()
                .unwrap(),
        ),
        (
            "1s x2 cap 5s, 10 probes",
            BreakerConfig::builder()
                .wait_duration(ms(1_000))
                .exponential_backoff(2.0, ms(5_000))
                .permitted_calls_in_half_open(10)
                .build()
                .unwrap(),
        ),
        (
            "500ms x2 cap 2s, 10 probes",
            BreakerConfig::builder()
                .wait_duration(ms(500))
                .exponential_backoff(2.0, ms(2_000))
                .permitted_calls_in_half_open(10)
                .build()
                .unwrap(),
        ),
        (
            "500ms x2 cap 2s, 3 probes",
            BreakerConfig::builder()
                .wait_duration(ms(500))
                .exponential_backoff(2.0, ms(2_000))
                .permitted_calls_in_half_open(3)
                .build()
                .unwrap(),
        ),
        (
            "500ms x2 cap 2s, 1 probe",
            BreakerConfig::builder()
                .wait_duration(ms(500))
                .exponential_backoff(2.0, ms(2_000))
                .permitted_calls_in_half_open(1)
                .build()
                .unwrap(),
        ),
        (
            "250ms x2 cap 1s, 3 probes",
            BreakerConfig::builder()
                .wait_duration(ms(250))
                .exponential_backoff(2.0, ms(1_000))
                .permitted_calls_in_half_open(3)
                .build()
                .unwrap(),
        ),
        (
            "500ms x2 cap 1.5s, 3 probes",
            BreakerConfig::builder()
                .wait_duration(ms(500))
                .exponential_backoff(2.0, ms(1_500))
                .permitted_calls_in_half_open(3)
                .build()
                .unwrap(),
        ),
        (
            "500ms x2 cap 1.5s, 5 probes",
            BreakerConfig::builder()
                .wait_duration(ms(500))
                .exponential_backoff(2.0, ms(1_500))
                .permitted_calls_in_half_open(5)
                .build()
                .unwrap(),
        ),
        (
            "500ms x2 cap 1s, 3 probes",
            BreakerConfig::builder()
                .wait_duration(ms(500))
                .exponential_backoff(2.0, ms(1_000))
                .permitted_calls_in_half_open(3)
                .build()
                .unwrap(),
        ),
        (
            "250ms x2 cap 500ms, 3 probes",
            BreakerConfig::builder()
                .wait_duration(ms(250))
                .exponential_backoff(2.0, ms(500))
                .permitted_calls_in_half_open(3)
                .build()
                .unwrap(),
        ),
        (
            "250ms fixed, 3 probes",
            BreakerConfig::builder()
                .wait_duration(ms(250))
                .backoff_multiplier(1.0)
                .permitted_calls_in_half_open(3)
                .build()
                .unwrap(),
        ),
        ("defaults", BreakerConfig::default()),
    ];
    println!(
        "| setting | trips after | probes to dead upstream /min | first success after (10 s outage / worst) | closed after (10 s / worst) | calls lost after the return (mean / worst) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, config) in candidates {
        let (ten, worst, lost) = worst(&config).await;
        let f = |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{d:.2?}"));
        println!(
            "| {name} | {} | {} | {} / {} | {} / {} | {lost} / {} |",
            f(ten.tripped_after),
            ten.probes_to_dead * 6,
            f(ten.first_success_after),
            f(worst.first_success_after),
            f(ten.closed_after),
            f(worst.closed_after),
            worst.lost_after_return,
        );
    }
}
