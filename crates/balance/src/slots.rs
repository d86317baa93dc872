//! Metrics slots: the small numbers that label an endpoint's metric series.
//!
//! A metrics recorder keeps every label set it was ever given (the `metrics` crate cannot
//! delete a series), so labelling series by endpoint address would leave one set of series
//! per address ever seen. Instead each endpoint takes the lowest free slot when it joins and
//! gives it back when it leaves; its series are labelled `endpoint="<slot>"`. The slots in
//! use never exceed the most endpoints the balancer has held at once, and so neither do the
//! series.

use std::collections::BTreeSet;

/// Hands out the lowest free slot number.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// Slots given back, below `next`.
    free: BTreeSet<u32>,
    /// One past the highest slot ever handed out.
    next: u32,
}

impl Slots {
    /// The lowest slot not in use.
    pub(crate) fn take(&mut self) -> u32 {
        match self.free.pop_first() {
            Some(slot) => slot,
            None => {
                let slot = self.next;
                // endpoints are capped far below u32::MAX, so this never saturates
                self.next = self.next.saturating_add(1);
                slot
            }
        }
    }

    /// Gives a slot back for the next endpoint to reuse.
    pub(crate) fn give_back(&mut self, slot: u32) {
        debug_assert!(slot < self.next && !self.free.contains(&slot));
        self.free.insert(slot);
    }

    /// How many distinct slots were ever handed out: the peak number of endpoints.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn high_water(&self) -> u32 {
        self.next
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_slot_is_reused() {
        let mut s = Slots::default();
        assert_eq!((s.take(), s.take(), s.take()), (0, 1, 2));
        s.give_back(1);
        s.give_back(0);
        assert_eq!(s.take(), 0, "the lowest free slot first");
        assert_eq!(s.take(), 1);
        assert_eq!(s.take(), 3);
        assert_eq!(s.high_water(), 4);
    }

    #[test]
    fn churn_uses_no_more_slots_than_the_peak() {
        let mut s = Slots::default();
        let mut live = std::collections::VecDeque::new();
        for _ in 0..2_000 {
            live.push_back(s.take());
            if live.len() > 5 {
                s.give_back(live.pop_front().unwrap());
            }
        }
        assert_eq!(s.high_water(), 6);
    }
}
