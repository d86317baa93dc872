//! Whether an endpoint is out of rotation (failing its health checks, or ejected), counted
//! exactly once in its balancer's count of such endpoints.
//!
//! The count decides panic mode (too few endpoints in rotation: route to all of them, as
//! Envoy's `healthy_panic_threshold`) and feeds the healthy gauge, so it must neither count
//! an endpoint that is both ejected and failing its checks twice nor drift when the two
//! change at once on different threads (a probe's result, a call's ejection, a removal).
//! Each endpoint keeps one flag, the count's view of it; whoever changes the endpoint's
//! state settles the flag to the state, and the count moves only with the flag's swaps.
//! The count of endpoints awaiting their first probe is kept the same way.

use tower_prism_core::sync::{AtomicBool, AtomicUsize, Ordering};

/// An endpoint's place in the out-of-rotation count.
#[derive(Debug, Default)]
pub(crate) struct OutOfRotation(AtomicBool);

impl OutOfRotation {
    /// Settles the flag to `is_out()` and moves `count` with it. The state can change again
    /// while this runs (on another thread, whose settle may swap first): it looks again
    /// until the state it set is the state it reads, so the last settle to finish leaves the
    /// flag right, and the count always equals the flags set.
    pub(crate) fn settle(&self, is_out: impl Fn() -> bool, count: &AtomicUsize) {
        let mut out = is_out();
        loop {
            if self.0.swap(out, Ordering::SeqCst) != out {
                if out {
                    count.fetch_add(1, Ordering::SeqCst);
                } else {
                    count.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let now = is_out();
            if now == out {
                return;
            }
            out = now;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_count_follows_the_flag() {
        let count = AtomicUsize::new(0);
        let (a, b) = (OutOfRotation::default(), OutOfRotation::default());
        a.settle(|| true, &count);
        a.settle(|| true, &count);
        b.settle(|| true, &count);
        assert_eq!(count.load(Ordering::Relaxed), 2, "once per endpoint");
        a.settle(|| false, &count);
        a.settle(|| false, &count);
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }
}

#[cfg(all(loom, test))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// An endpoint's two reasons to be out, changed on two threads (a probe's result and a
    /// removal, say), each settling after its change: whatever the interleaving, the count
    /// ends equal to whether the endpoint is out, never wrapped, never doubled.
    fn two_changes(unhealthy_from: bool, unhealthy_to: bool, removed_to: bool) {
        loom::model(move || {
            let count = Arc::new(AtomicUsize::new(0));
            let flag = Arc::new(OutOfRotation::default());
            let unhealthy = Arc::new(AtomicBool::new(unhealthy_from));
            let removed = Arc::new(AtomicBool::new(false));
            let is_out = {
                let (unhealthy, removed) = (unhealthy.clone(), removed.clone());
                move || !removed.load(Ordering::SeqCst) && unhealthy.load(Ordering::SeqCst)
            };
            flag.settle(&is_out, &count);
            let prober = {
                let (flag, count, unhealthy, is_out) = (
                    flag.clone(),
                    count.clone(),
                    unhealthy.clone(),
                    is_out.clone(),
                );
                thread::spawn(move || {
                    unhealthy.store(unhealthy_to, Ordering::SeqCst);
                    flag.settle(&is_out, &count);
                })
            };
            removed.store(removed_to, Ordering::SeqCst);
            flag.settle(&is_out, &count);
            prober.join().unwrap();
            let expected = usize::from(!removed_to && unhealthy_to);
            assert_eq!(count.load(Ordering::SeqCst), expected);
        });
    }

    #[test]
    fn loom_failing_probe_while_removed() {
        two_changes(false, true, true);
    }

    #[test]
    fn loom_passing_probe_while_removed() {
        two_changes(true, false, true);
    }

    #[test]
    fn loom_failing_probe_while_staying() {
        two_changes(false, true, false);
    }
}
