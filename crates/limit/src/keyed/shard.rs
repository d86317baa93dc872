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
//! limited keys costs a few sequential reads, not a few cache misses. For the same reason a
//! TAT that moved since its filing proves the key was used again: the filing then notes
//! that the key came back. At the cap a key that came back stays until it is idle (the
//! segmented-LRU idea: keys on probation go first), so a flood of one-off keys churns
//! only the keys seen once and cannot push out the clients that keep returning.

use std::collections::VecDeque;

use super::table::Table;
use crate::bucket::Quota;

/// A key's place in its shard's filing order, in 16 bytes: a tracked key's low bit is
/// always set (`KeyedBuckets` keeps keys so), so the filing clears it once the key is seen
/// to have come back.
#[derive(Clone, Copy)]
struct Filing {
    /// The key, its low bit cleared if the key came back.
    marked_key: u64,
    /// The key's TAT when it was filed here.
    tat: u64,
}

impl Filing {
    fn new(key: u64, tat: u64, came_back: bool) -> Self {
        debug_assert!(key & 1 == 1, "tracked keys have their low bit set");
        Filing {
            marked_key: if came_back { key & !1 } else { key },
            tat,
        }
    }

    fn key(self) -> u64 {
        self.marked_key | 1
    }

    /// Whether the key was used again after its first admission, as far as the looks at
    /// it so far have seen.
    fn came_back(self) -> bool {
        self.marked_key & 1 == 0
    }
}

/// Which keys at the front of a shard may go.
#[derive(Clone, Copy, Debug)]
pub(super) enum Evict {
    /// Below the cap: keys idle since `idle_by` (their buckets full since then).
    Idle { idle_by: u64 },
    /// At the cap: keys whose buckets are full at `now` and that never came back, and keys
    /// idle since `idle_by` (`None`: none is idle yet).
    AtCap { now: u64, idle_by: Option<u64> },
}

impl Evict {
    /// Filed TATs after this are still limited: the key stays, whatever came of it.
    fn full_by(self) -> u64 {
        match self {
            Evict::Idle { idle_by } => idle_by,
            Evict::AtCap { now, .. } => now,
        }
    }

    fn may_go(self, tat: u64, came_back: bool) -> bool {
        let idle = |idle_by: u64| tat <= idle_by;
        match self {
            Evict::Idle { idle_by } => idle(idle_by),
            Evict::AtCap { now, idle_by } => {
                tat <= now && (!came_back || idle_by.is_some_and(idle))
            }
        }
    }
}

pub(super) struct Shard {
    /// The shape of this shard's buckets, which its TATs are in the scale of: changed
    /// with them, under the shard's lock, so an admission never sees one without the other.
    pub(super) quota: Quota,
    tats: Table,
    /// Every tracked key, oldest filing first.
    order: VecDeque<Filing>,
    /// Keys looked at by [`Shard::drop_front`], for the tests that bound the work done.
    #[cfg(test)]
    pub(super) examined: u64,
}

impl Shard {
    /// An empty shard of buckets shaped `quota`.
    pub(super) fn new(quota: Quota) -> Self {
        Shard {
            quota,
            tats: Table::default(),
            order: VecDeque::new(),
            #[cfg(test)]
            examined: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.tats.len()
    }

    pub(super) fn tat(&self, key: u64) -> Option<u64> {
        self.tats.get(key)
    }

    pub(super) fn tat_mut(&mut self, key: u64) -> Option<&mut u64> {
        self.tats.get_mut(key)
    }

    /// Applies `f` to every tracked key's TAT. The filings keep the TATs they had: one
    /// that grew reads as a key that came back, one that shrank as a key still limited,
    /// both of which only keep a key longer.
    pub(super) fn map_tats(&mut self, f: impl Fn(u64) -> u64) {
        for tat in self.tats.tats_mut() {
            *tat = f(*tat);
        }
    }

    /// Starts tracking `key` (not tracked yet) with `tat`, at the back of the order.
    pub(super) fn track(&mut self, key: u64, tat: u64) {
        self.tats.insert_new(key, tat);
        self.order.push_back(Filing::new(key, tat, false));
    }

    /// Looks at up to `budget` keys at the front, drops those `rule` lets go, and stops
    /// once `want` have gone. A key that stays moves to the back, noting whether it came
    /// back. Returns how many were dropped.
    pub(super) fn drop_front(&mut self, rule: Evict, budget: usize, want: usize) -> usize {
        let mut dropped = 0;
        for _ in 0..budget.min(self.order.len()) {
            if dropped == want {
                break;
            }
            let Some(filing) = self.order.pop_front() else {
                break;
            };
            #[cfg(test)]
            {
                self.examined += 1;
            }
            if filing.tat > rule.full_by() {
                self.order.push_back(filing);
                continue;
            }
            if self.look_at(filing, rule) {
                dropped += 1;
            }
        }
        dropped
    }

    /// Drops the key of `filing` if `rule` lets it go, or files it again at the back;
    /// returns whether it went.
    fn look_at(&mut self, filing: Filing, rule: Evict) -> bool {
        let key = filing.key();
        let mut came_back = filing.came_back();
        let looked = self.tats.remove_if(key, |tat| {
            came_back |= tat != filing.tat;
            rule.may_go(tat, came_back)
        });
        match looked {
            Ok(()) => true,
            Err(Some(tat)) => {
                self.order.push_back(Filing::new(key, tat, came_back));
                false
            }
            Err(None) => {
                debug_assert!(false, "every key in the order is in the table");
                false
            }
        }
    }

    /// Drops every key idle since `idle_by`; returns how many went. O(n): for an explicit
    /// sweep, never on the admit path.
    pub(super) fn drop_all(&mut self, idle_by: u64) -> usize {
        let before = self.len();
        for _ in 0..self.order.len() {
            let Some(filing) = self.order.pop_front() else {
                break;
            };
            self.look_at(filing, Evict::Idle { idle_by });
        }
        before - self.len()
    }
}
