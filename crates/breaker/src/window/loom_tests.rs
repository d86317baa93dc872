//! Loom models of the sliding windows under concurrent records.

use super::*;
use loom::thread;
use tower_prism_core::sync::Arc;

#[test]
fn loom_count_window_totals_match_slots() {
    loom::model(|| {
        let w = Arc::new(CountWindow::new(2));
        w.record(true, false);
        let handles: Vec<_> = [(true, true), (false, false)]
            .into_iter()
            .map(|(f, s)| {
                let w = w.clone();
                thread::spawn(move || {
                    let seen = w.record(f, s);
                    // a torn read is possible but is always detectably inconsistent or real
                    if seen.is_consistent(2) {
                        assert!(seen.calls >= 1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(w.counts(), w.slot_sum());
        assert_eq!(w.counts().calls, 2);
    });
}

/// Records `(failure, slow)` of each of `calls` on a thread of its own, all at once.
fn record_at_once(w: &Arc<CountWindow>, calls: [(bool, bool); 2]) {
    let handles: Vec<_> = calls
        .into_iter()
        .map(|(failure, slow)| {
            let w = w.clone();
            thread::spawn(move || {
                w.record(failure, slow);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// A record that finds its code already in the slot writes nothing; a record of another
/// lap racing it for the same slot still accounts for its own change.
#[test]
fn loom_an_unchanged_slot_and_a_racing_lap_keep_the_totals() {
    loom::model(|| {
        let w = Arc::new(CountWindow::new(1));
        w.record(false, false);
        record_at_once(&w, [(false, false), (true, false)]);
        assert_eq!(w.counts(), w.slot_sum());
        assert_eq!(w.counts().calls, 1);
    });
}

/// Successes recorded over a full window of them write nothing, while a failure races
/// them for the slots: the totals still match the slots, and hold the failure.
#[test]
fn loom_a_skipped_success_racing_a_failure_keeps_the_totals() {
    loom::model(|| {
        let w = Arc::new(CountWindow::new(2));
        w.record(false, false);
        w.record(false, false);
        record_at_once(&w, [(true, false), (false, false)]);
        assert_eq!(w.counts(), w.slot_sum());
        assert_eq!(w.counts().calls, 2);
        assert_eq!(w.counts().failures, 1);
    });
}
