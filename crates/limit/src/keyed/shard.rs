//! One shard of the keyed buckets: the TAT table and the order keys were filed in.
//!
//! Every tracked key is in `order` exactly once, with the TAT it had when it was filed
//! there. Keys leave only from the front, after their TAT has been checked, so dropping one
//! is O(1); a key at the front that may not go yet moves to the back (it is looked at again
//! after every other key of the shard).
//!
//! A TAT only grows while a key is tracked (a refund, which lowers it, is the exception and
//! errs on the safe side: the key is kept a little longer), so a filed TAT still in the
//! future proves the key may not go without looking it up in the table: a front full of
//! limited keys costs a few sequential reads, not a few cache misses.

use std::collections::VecDeque;

use super::table::Table;

#[derive(Default)]
pub(super) struct Shard {
    tats: Table,
    /// Every tracked key and the TAT it was filed with, oldest filing first.
    order: VecDeque<(u64, u64)>,
    /// Keys looked at by [`Shard::drop_front`], for the tests that bound the work done.
    #[cfg(test)]
    pub(super) examined: u64,
}

impl Shard {
    pub(super) fn len(&self) -> usize {
        self.tats.len()
    }

    pub(super) fn tat(&self, key: u64) -> Option<u64> {
        self.tats.get(key)
    }

    pub(super) fn tat_mut(&mut self, key: u64) -> Option<&mut u64> {
        self.tats.get_mut(key)
    }

    /// Starts tracking `key` (not tracked yet) with `tat`, at the back of the order.
    pub(super) fn track(&mut self, key: u64, tat: u64) {
        self.tats.insert_new(key, tat);
        self.order.push_back((key, tat));
    }

    /// Looks at up to `budget` keys at the front, drops those whose TAT is at or before
    /// `full_by` (their buckets are full, so nothing is lost), and stops once `want` have
    /// gone. A key that must stay moves to the back. Returns how many were dropped.
    pub(super) fn drop_front(&mut self, full_by: u64, budget: usize, want: usize) -> usize {
        let mut dropped = 0;
        for _ in 0..budget.min(self.order.len()) {
            if dropped == want {
                break;
            }
            let Some((key, filed)) = self.order.pop_front() else {
                break;
            };
            #[cfg(test)]
            {
                self.examined += 1;
            }
            if filed > full_by {
                self.order.push_back((key, filed));
                continue;
            }
            match self.tats.remove_if_by(key, full_by) {
                Ok(()) => dropped += 1,
                Err(Some(tat)) => self.order.push_back((key, tat)),
                Err(None) => debug_assert!(false, "every key in the order is in the table"),
            }
        }
        dropped
    }

    /// Drops every key whose TAT is at or before `full_by`; returns how many went. O(n):
    /// for an explicit sweep, never on the admit path.
    pub(super) fn drop_all(&mut self, full_by: u64) -> usize {
        let before = self.len();
        for _ in 0..self.order.len() {
            let Some((key, _)) = self.order.pop_front() else {
                break;
            };
            if let Err(Some(tat)) = self.tats.remove_if_by(key, full_by) {
                self.order.push_back((key, tat));
            }
        }
        before - self.len()
    }
}
