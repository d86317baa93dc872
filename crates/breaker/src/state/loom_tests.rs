//! Loom models of the lock-free probe admission and the closed-state counters.

use std::time::Duration;

use loom::thread;
use tokio::time::Instant;
use tower_prism_core::sync::{
    Arc, AtomicUsize,
    Ordering::{AcqRel, Relaxed},
};
use tower_prism_core::{Moment, Outcome};

use super::{Machine, State};
use crate::config::{BreakerConfig, Window};

/// `loom::model` with a preemption bound of 3 unless `LOOM_MAX_PREEMPTIONS` says
/// otherwise, so each model finishes in seconds.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    builder.check(f);
}

fn breaker(probes: u32, window: u32) -> Arc<Machine> {
    let config = BreakerConfig::builder()
        .window(Window::Count { size: window })
        .minimum_calls(window)
        .permitted_calls_in_half_open(probes)
        .build()
        .unwrap();
    Arc::new(Machine::new("loom".to_owned(), &config, None))
}

fn now() -> Moment {
    Moment::Tokio(Instant::now())
}

/// Three threads race for `n` probe permits; the first gives its permit back (a
/// cancelled call) while the others hold theirs: at no moment are more than `n` held.
fn probes_never_exceed(n: u32) {
    model(move || {
        let b = breaker(n, 4);
        b.force(State::HalfOpen);
        let held = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let (b, held) = (b.clone(), held.clone());
                thread::spawn(move || {
                    let Ok(permit) = b.acquire(now()) else {
                        return 0;
                    };
                    assert!(permit.is_probe());
                    let now_held = held.fetch_add(1, AcqRel) + 1;
                    assert!(now_held <= n as usize, "{now_held} probes held");
                    if i == 0 {
                        held.fetch_sub(1, AcqRel);
                        b.release(permit);
                        return 0;
                    }
                    1
                })
            })
            .collect();
        let kept: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(kept <= n);
        assert_eq!(
            b.snapshot(now()).probes_admitted,
            kept,
            "released permits came back"
        );
    });
}

#[test]
fn loom_half_open_admits_at_most_one_probe() {
    probes_never_exceed(1);
}

#[test]
fn loom_half_open_admits_at_most_two_probes() {
    probes_never_exceed(2);
}

/// One probe, recorded as a failure: whatever the interleaving, exactly one of three
/// callers got through and the breaker is open again.
#[test]
fn loom_single_probe_round_reopens() {
    model(|| {
        let b = breaker(1, 4);
        b.force(State::HalfOpen);
        let admitted = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (b, admitted) = (b.clone(), admitted.clone());
                thread::spawn(move || {
                    let now = now();
                    if let Ok(permit) = b.acquire(now) {
                        admitted.fetch_add(1, Relaxed);
                        b.record(permit, Outcome::RETRYABLE, Duration::ZERO, now);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(admitted.load(Relaxed), 1);
        assert_eq!(b.state(), State::Open);
    });
}

/// Closed-state records from several threads all land in the window and the
/// consecutive-failure counter.
#[test]
fn loom_closed_counters_add_up() {
    model(|| {
        let b = breaker(1, 4);
        let now = now();
        let first = b.acquire(now).unwrap();
        b.record(first, Outcome::Success, Duration::ZERO, now);
        let handles: Vec<_> = [Outcome::RETRYABLE, Outcome::RETRYABLE]
            .into_iter()
            .map(|outcome| {
                let b = b.clone();
                thread::spawn(move || {
                    let permit = b.acquire(now).unwrap();
                    b.record(permit, outcome, Duration::ZERO, now);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let snap = b.snapshot(now);
        assert_eq!(snap.state, State::Closed, "3 calls < minimum_calls 4");
        assert_eq!((snap.calls, snap.failures), (3, 2));
        assert_eq!(snap.consecutive_failures, 2);
    });
}

/// Two threads change the state while a callback listens: whatever the interleaving, it
/// hears both changes, each once, in the order they were made (each one's `from` is the
/// `to` before it), and the last is the state the breaker is in.
#[test]
fn loom_state_changes_are_told_in_order() {
    use super::StateChange;
    use loom::sync::Mutex;

    model(|| {
        let b = breaker(1, 4);
        // A loom mutex: loom switches threads only at its own operations, and a callback
        // may be descheduled anywhere.
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        b.on_state_change(std::sync::Arc::new(move |change: StateChange| {
            log.lock().unwrap().push(change);
        }));
        let handles: Vec<_> = [State::ForcedOpen, State::Disabled]
            .into_iter()
            .map(|to| {
                let b = b.clone();
                thread::spawn(move || b.force(to))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].from, State::Closed, "{seen:?}");
        assert_eq!(seen[1].from, seen[0].to, "{seen:?}");
        assert_eq!(seen[1].to, b.state());
    });
}
