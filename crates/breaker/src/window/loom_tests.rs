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
