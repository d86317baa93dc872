//! Unit tests of the [`Machine`], with explicit moments on its clock.

use std::time::Duration;

use tokio::time::Instant;
use tower_prism_core::{Clock, Moment, Outcome};

use super::{Machine, State};
use crate::config::{BreakerConfig, Window};

fn machine() -> Machine {
    let config = BreakerConfig::builder()
        .window(Window::Count { size: 2 })
        .minimum_calls(2)
        .wait_duration(Duration::from_secs(1))
        .permitted_calls_in_half_open(2)
        // The tests hand the machine tokio moments.
        .clock(Clock::Tokio)
        .build()
        .unwrap();
    Machine::new("test".to_owned(), &config, None)
}

#[test]
fn a_permit_from_an_earlier_state_records_nothing() {
    let b = machine();
    let t0 = Moment::Tokio(Instant::now());
    let (stale, stale2) = (b.acquire(t0).unwrap(), b.acquire(t0).unwrap());
    b.force(State::ForcedOpen);
    b.force(State::Closed); // closed again, a new generation
    b.record(stale, Outcome::RETRYABLE, Duration::ZERO, t0);
    assert_eq!(b.snapshot(t0).calls, 0);
    b.release(stale2); // a closed permit has nothing to give back
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn probes_are_counted_per_round_and_released_ones_come_back() {
    let b = machine();
    let now = Instant::now();
    let t0 = Moment::Tokio(now);
    for _ in 0..2 {
        let p = b.acquire(t0).unwrap();
        b.record(p, Outcome::RETRYABLE, Duration::ZERO, t0);
    }
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.acquire(t0), Err(Duration::from_secs(1)));
    let t1 = Moment::Tokio(now + Duration::from_secs(1));
    let (p1, p2) = (b.acquire(t1).unwrap(), b.acquire(t1).unwrap());
    assert!(p1.is_probe() && p2.is_probe());
    assert!(b.acquire(t1).is_err());
    b.release(p1);
    assert_eq!(b.snapshot(t1).probes_admitted, 1);
    let p3 = b.acquire(t1).unwrap();
    assert!(
        b.acquire(t1).is_err(),
        "one released, one taken again: still 2"
    );
    b.record(p2, Outcome::Success, Duration::ZERO, t1);
    assert_eq!(b.state(), State::HalfOpen);
    b.record(p3, Outcome::Success, Duration::ZERO, t1);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_permit_remembers_when_its_call_was_admitted() {
    let b = machine();
    let t0 = Moment::Tokio(Instant::now());
    assert_eq!(b.acquire(t0).unwrap().start, t0);
}

#[test]
fn the_open_wait_grows_to_its_cap_and_a_hint_replaces_it_within_bounds() {
    use super::params::Params;
    use crate::config::MIN_HINTED_WAIT;
    let ms = |n: u64| Duration::from_millis(n).as_nanos() as u64;
    // the defaults: 500 ms doubling, capped at 1 s
    let p = Params::new(&BreakerConfig::default());
    let waits: Vec<u64> = (0..4).map(|reopens| p.open_wait(reopens, None)).collect();
    assert_eq!(waits, [ms(500), ms(1_000), ms(1_000), ms(1_000)]);
    assert_eq!(p.open_wait(u32::MAX, None), ms(1_000));
    // a hint replaces the computed wait, whatever the round, within [100 ms, 30 s]
    let hint = |d: u64| Some(Duration::from_millis(d));
    assert_eq!(p.open_wait(0, hint(2_000)), ms(2_000));
    assert_eq!(p.open_wait(3, hint(700)), ms(700));
    assert_eq!(p.open_wait(0, hint(0)), MIN_HINTED_WAIT.as_nanos() as u64);
    assert_eq!(p.open_wait(0, Some(Duration::MAX)), ms(30_000));
    // a cap below the floor wins over the floor
    let tiny = BreakerConfig::builder()
        .wait_duration(Duration::from_millis(10))
        .max_wait_duration(Duration::from_millis(50))
        .build()
        .unwrap();
    assert_eq!(Params::new(&tiny).open_wait(0, hint(0)), ms(50));
}
