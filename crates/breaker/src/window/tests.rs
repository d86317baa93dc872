//! Unit tests of the sliding windows.

use super::*;

#[test]
fn count_window_slides() {
    let w = CountWindow::new(3);
    assert_eq!(
        w.record(true, false),
        Counts {
            calls: 1,
            failures: 1,
            slow: 0
        }
    );
    assert_eq!(
        w.record(false, true),
        Counts {
            calls: 2,
            failures: 1,
            slow: 1
        }
    );
    assert_eq!(
        w.record(false, false),
        Counts {
            calls: 3,
            failures: 1,
            slow: 1
        }
    );
    // the first failure falls out
    assert_eq!(
        w.record(false, false),
        Counts {
            calls: 3,
            failures: 0,
            slow: 1
        }
    );
    assert_eq!(
        w.record(true, true),
        Counts {
            calls: 3,
            failures: 1,
            slow: 1
        }
    );
    assert_eq!(w.counts(), w.slot_sum());
    w.clear();
    assert_eq!(w.counts(), Counts::default());
    assert_eq!(w.record(true, false).failures, 1);
}

/// A window full of successes takes no slot for another success; a failure then is still
/// counted for exactly the next `size` calls, as the ring's order wants.
#[test]
fn a_window_full_of_successes_writes_nothing_for_another() {
    let w = CountWindow::new(3);
    for _ in 0..3 {
        w.record(false, false);
    }
    let cursor = w.hot.cursor.load(Relaxed);
    for _ in 0..5 {
        assert_eq!(
            w.record(false, false),
            Counts {
                calls: 3,
                failures: 0,
                slow: 0
            }
        );
    }
    assert_eq!(w.hot.cursor.load(Relaxed), cursor, "no slot taken");
    assert_eq!(w.record(true, false).failures, 1);
    assert_eq!(w.record(false, false).failures, 1);
    assert_eq!(w.record(false, false).failures, 1);
    assert_eq!(
        w.record(false, false).failures,
        0,
        "three calls later it falls out"
    );
    assert_eq!(
        w.record(false, true).slow,
        1,
        "a slow success takes its slot"
    );
    assert_eq!(w.counts(), w.slot_sum());
}

#[test]
fn slot_index_is_the_remainder() {
    for size in [1u32, 2, 3, 7, 100, 1000, 65_537, 1 << 20] {
        let w = CountWindow::new(size);
        for c in (0..5_000u32).chain([u32::MAX - 3, u32::MAX - 1, u32::MAX]) {
            assert_eq!(w.slot_index(c), (c % size) as usize, "{c} % {size}");
        }
    }
}

#[test]
fn time_window_expires_old_buckets() {
    let ms = 1_000_000;
    let w = TimeWindow::new(100 * ms, 10); // 1 s window of 100 ms slices
    w.record(true, false, 50 * ms);
    w.record(false, false, 150 * ms);
    assert_eq!(
        w.counts(150 * ms),
        Counts {
            calls: 2,
            failures: 1,
            slow: 0
        }
    );
    assert_eq!(w.counts(999 * ms).calls, 2);
    // at 1.0 s the first slice (0..100 ms) has left the window
    assert_eq!(
        w.counts(1_000 * ms),
        Counts {
            calls: 1,
            failures: 0,
            slow: 0
        }
    );
    // a new lap reuses bucket 0 and replaces its old counts
    assert_eq!(
        w.record(false, true, 1_020 * ms),
        Counts {
            calls: 2,
            failures: 0,
            slow: 1
        }
    );
    assert_eq!(w.counts(1_099 * ms).calls, 2);
    assert_eq!(w.counts(1_100 * ms).calls, 1);
    // idle for longer than the window: empty, and stale buckets are cleared
    assert_eq!(w.counts(5_000 * ms), Counts::default());
    assert_eq!(
        w.record(true, false, 5_000 * ms),
        Counts {
            calls: 1,
            failures: 1,
            slow: 0
        }
    );
    // far in the future, a tag that aliases (1024 laps later) is not resurrected
    let later = 5_000 * ms + 1024 * 1_000 * ms;
    assert_eq!(
        w.record(false, false, later),
        Counts {
            calls: 1,
            failures: 0,
            slow: 0
        }
    );
    w.clear();
    assert_eq!(w.counts(later).calls, 0);
}

#[test]
fn time_window_never_resurrects_an_aliased_lap() {
    let ms = 1_000_000;
    let w = TimeWindow::new(100 * ms, 10);
    w.record(true, false, 350 * ms); // slice 3 of lap 0
                                     // 1024 laps of steady traffic that never lands in slice 3 (so the window is never
                                     // idle for a whole second): the old failure must not come back when the lap tag
                                     // wraps around
    let lap = 1_000 * ms;
    for l in 1..=1024u64 {
        for slice in [0, 2, 5, 7] {
            if l < 1024 || slice < 3 {
                w.record(false, false, l * lap + slice * 100 * ms);
            }
        }
    }
    // the window at 1024.35 s holds slices 5 and 7 of lap 1023 and 0 and 2 of lap 1024
    let at = 1024 * lap + 350 * ms;
    let c = w.counts(at);
    assert_eq!((c.calls, c.failures), (4, 0), "{c:?}");
    assert_eq!(w.record(false, false, at).failures, 0);
}
