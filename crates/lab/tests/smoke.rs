//! One short simulated scenario through every stack: every request is accounted for and
//! none hangs. Rankings are the report's business, not this test's.

use std::time::Duration;

use tower_prism_lab::scenario::{self, shortened};
use tower_prism_lab::simulate;
use tower_prism_lab::stacks::Stack;

#[test]
fn every_stack_accounts_for_every_request_of_a_short_outage() {
    let outage = scenario::all()
        .into_iter()
        .find(|s| s.name == "outage")
        .expect("the outage scenario");
    let short = shortened(&outage, Duration::from_secs(3));
    for stack in Stack::SIMULATED {
        let m = simulate(&short, stack);
        assert!(
            m.sent > 1000,
            "{}: only {} requests sent",
            stack.name(),
            m.sent
        );
        assert_eq!(m.unaccounted, 0, "{}: requests lost or hung", stack.name());
        assert_eq!(
            m.ok + m.failed + m.timed_out,
            m.sent,
            "{}: outcomes do not add up",
            stack.name()
        );
        assert!(m.ok > 0, "{}: no success at all", stack.name());
        assert!(
            m.failed + m.timed_out > 0,
            "{}: the outage went unseen",
            stack.name()
        );
    }
}

#[test]
fn the_key_flood_runs_through_every_stack_with_nothing_lost() {
    let flood = scenario::all()
        .into_iter()
        .find(|s| s.name == "key-flood")
        .expect("the key-flood scenario");
    let short = shortened(&flood, Duration::from_secs(1));
    for stack in Stack::SIMULATED {
        let m = simulate(&short, stack);
        assert_eq!(m.unaccounted, 0, "{}: requests lost or hung", stack.name());
        assert!(m.jain.is_some(), "{}: no fairness figure", stack.name());
    }
}

/// The upstream and the load are deterministic for a seed (the plain client draws no
/// random numbers of its own; tower's and tower-prism's stacks do, from seeds they do not
/// expose, so they are not compared here).
#[test]
fn a_seed_gives_the_same_upstream_and_load_twice() {
    let slow = scenario::all()
        .into_iter()
        .find(|s| s.name == "slow-endpoint")
        .expect("the slow-endpoint scenario");
    let short = shortened(&slow, Duration::from_secs(2));
    assert_eq!(
        simulate(&short, Stack::Plain),
        simulate(&short, Stack::Plain)
    );
}

/// The real mode (hyper on 127.0.0.1) accounts for every request too; only accounting is
/// asserted, nothing that depends on the machine's speed.
#[test]
fn the_real_mode_accounts_for_every_request_over_loopback() {
    let failing = scenario::all()
        .into_iter()
        .find(|s| s.name == "failing-endpoint")
        .expect("the failing-endpoint scenario");
    let short = shortened(&failing, Duration::from_millis(600));
    for stack in [Stack::Plain, Stack::Resilience, Stack::PrismDefault] {
        let m = tower_prism_lab::run_real(&short, stack).expect("loopback servers");
        assert!(m.sent > 0, "{}: nothing sent", stack.name());
        assert_eq!(m.unaccounted, 0, "{}: requests lost or hung", stack.name());
        assert_eq!(m.ok + m.failed + m.timed_out, m.sent, "{}", stack.name());
    }
}

/// Issue 15's suite (`-- defaults`): each scenario, shortened, through every stack, with
/// every request accounted for.
#[test]
fn every_defaults_scenario_runs_through_every_stack_with_nothing_lost() {
    for s in scenario::defaults() {
        let short = shortened(&s, Duration::from_secs(2));
        for stack in Stack::SIMULATED {
            let m = simulate(&short, stack);
            assert!(
                m.sent > 100,
                "{} / {}: only {} sent",
                s.name,
                stack.name(),
                m.sent
            );
            assert_eq!(
                m.unaccounted,
                0,
                "{} / {}: lost or hung",
                s.name,
                stack.name()
            );
            assert_eq!(
                m.ok + m.failed + m.timed_out,
                m.sent,
                "{} / {}",
                s.name,
                stack.name()
            );
        }
    }
}

/// The simulated mode runs no real-only stack (tower-resilience's waits would run on wall
/// time there); the real mode runs every stack.
#[test]
fn only_the_real_mode_runs_the_real_only_stacks() {
    assert!(Stack::for_mode(false).iter().all(|s| !s.real_only()));
    assert_eq!(Stack::for_mode(true), &Stack::ALL[..]);
    assert!(Stack::ALL.iter().any(|s| s.real_only()));
}
