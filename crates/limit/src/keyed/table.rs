//! The map from a key hash to its bucket's TAT: open addressing, Robin Hood insertion, and
//! deletion by backward shift.
//!
//! Why not `std`'s `HashMap`: at the key cap the map churns at a constant size (one key
//! out, one in, per fresh key), and a tombstoning map then rehashes itself every so often,
//! an O(n) pause under the shard's lock. Backward-shift deletion leaves no tombstones, so a
//! table at a constant size never rehashes and never allocates: it grows (doubling, one
//! rehash per doubling) only while the number of tracked keys reaches a new high. Robin
//! Hood insertion (a key displaces one nearer its home slot) keeps probe runs short up to
//! a load of 7/8, so the table is about as dense as `std`'s (16 bytes a slot).
//!
//! Keys are hashes already (from the limiter's randomly keyed hasher); the slot is picked
//! by Fibonacci hashing of the key, so every bit of it counts. Key 0 marks an empty slot:
//! callers never store it (see `KeyedBuckets`, which maps hash 0 to 1).

/// The smallest table, made on the first insert.
const MIN_SLOTS: usize = 16;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The key hash; 0 for an empty slot.
    key: u64,
    tat: u64,
}

/// A map from nonzero `u64` keys to `u64` TATs.
#[derive(Default)]
pub(super) struct Table {
    /// A power of two in length (or empty, before the first insert).
    slots: Box<[Slot]>,
    len: usize,
}

impl Table {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot a key would sit in on an empty table.
    fn home(&self, key: u64) -> usize {
        let bits = self.slots.len().trailing_zeros();
        // Fibonacci hashing: the high bits of the product depend on every bit of the key.
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }

    /// How far the key in slot `i` sits from its home slot.
    fn distance(&self, i: usize) -> usize {
        i.wrapping_sub(self.home(self.slots[i].key)) & self.mask()
    }

    /// Where `key` sits, or `None`. A run is ordered by distance from home, so the search
    /// stops at the first key nearer its home than `key` would be there.
    fn find(&self, key: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(key);
        let mut distance = 0;
        loop {
            match self.slots[i].key {
                k if k == key => return Some(i),
                0 => return None,
                _ if self.distance(i) < distance => return None,
                _ => {
                    i = (i + 1) & mask;
                    distance += 1;
                }
            }
        }
    }

    /// The TAT stored for `key`.
    pub(super) fn get(&self, key: u64) -> Option<u64> {
        self.find(key).map(|i| self.slots[i].tat)
    }

    /// The TAT stored for `key`, to change in place.
    pub(super) fn get_mut(&mut self, key: u64) -> Option<&mut u64> {
        self.find(key).map(|i| &mut self.slots[i].tat)
    }

    /// Every stored TAT, to change in place.
    pub(super) fn tats_mut(&mut self) -> impl Iterator<Item = &mut u64> {
        self.slots
            .iter_mut()
            .filter(|slot| slot.key != 0)
            .map(|slot| &mut slot.tat)
    }

    /// Stores `key` (nonzero, not in the table yet) with `tat`.
    pub(super) fn insert_new(&mut self, key: u64, tat: u64) {
        debug_assert!(key != 0, "key 0 marks an empty slot");
        debug_assert!(self.find(key).is_none(), "key already tracked");
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        self.place(key, tat);
        self.len += 1;
    }

    /// Writes `key` into its probe run (the table has room): past every key at least as far
    /// from its home, displacing the first one nearer its home, which moves on likewise.
    fn place(&mut self, key: u64, tat: u64) {
        let mask = self.mask();
        let mut moving = Slot { key, tat };
        let mut i = self.home(key);
        let mut distance = 0;
        while self.slots[i].key != 0 {
            let theirs = self.distance(i);
            if theirs < distance {
                moving = std::mem::replace(&mut self.slots[i], moving);
                distance = theirs;
            }
            i = (i + 1) & mask;
            distance += 1;
        }
        self.slots[i] = moving;
    }

    /// Doubles the slots (or makes the first ones) and moves every key over.
    #[cold]
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size].into());
        for slot in old.iter().filter(|s| s.key != 0) {
            self.place(slot.key, slot.tat);
        }
    }

    /// Removes `key`; returns its TAT (for the tests against a model map).
    #[cfg(all(test, not(loom)))]
    pub(super) fn remove(&mut self, key: u64) -> Option<u64> {
        let at = self.find(key)?;
        let tat = self.slots[at].tat;
        self.remove_at(at);
        Some(tat)
    }

    /// Removes `key` if `may_go` says so of its TAT (`Ok`); else leaves it and gives its
    /// TAT (`Err(Some)`), or `Err(None)` if it is not here. One search for both.
    pub(super) fn remove_if(
        &mut self,
        key: u64,
        may_go: impl FnOnce(u64) -> bool,
    ) -> Result<(), Option<u64>> {
        let at = self.find(key).ok_or(None)?;
        let tat = self.slots[at].tat;
        if !may_go(tat) {
            return Err(Some(tat));
        }
        self.remove_at(at);
        Ok(())
    }

    /// Empties slot `gap`: the keys after it in its run, each away from its home, shift
    /// back one slot, so no tombstone is left.
    fn remove_at(&mut self, mut gap: usize) {
        let mask = self.mask();
        loop {
            let next = (gap + 1) & mask;
            if self.slots[next].key == 0 || self.distance(next) == 0 {
                break;
            }
            self.slots[gap] = self.slots[next];
            gap = next;
        }
        self.slots[gap] = Slot::default();
        self.len -= 1;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any sequence of inserts, updates and removals leaves the table agreeing with
        /// `std`'s map, at every load up to 7/8.
        #[test]
        fn table_agrees_with_a_hash_map(
            ops in proptest::collection::vec((0u8..3, 1u64..64, any::<u64>()), 1..400),
            spread in any::<bool>(),
        ) {
            let mut table = Table::default();
            let mut model = HashMap::new();
            for (op, small, tat) in ops {
                // Small keys and keys spread over all 64 bits.
                let key = if spread { small.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1 } else { small };
                match op {
                    0 if !model.contains_key(&key) => {
                        table.insert_new(key, tat);
                        model.insert(key, tat);
                    }
                    0 | 1 => {
                        if let Some(t) = table.get_mut(key) {
                            *t = tat;
                        }
                        if let Some(t) = model.get_mut(&key) {
                            *t = tat;
                        }
                    }
                    _ => prop_assert_eq!(table.remove(key), model.remove(&key)),
                }
                prop_assert_eq!(table.len(), model.len());
            }
            for key in 1u64..64 {
                let key2 = if spread { key.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1 } else { key };
                prop_assert_eq!(table.get(key2), model.get(&key2).copied());
            }
        }
    }

    #[test]
    fn a_table_churning_at_a_constant_size_keeps_its_slots() {
        let mut table = Table::default();
        for key in 1..=100u64 {
            table.insert_new(key, key);
        }
        let slots = table.slots.len();
        for key in 101..=100_000u64 {
            assert_eq!(table.remove(key - 100), Some(key - 100));
            table.insert_new(key, key);
        }
        assert_eq!(table.len(), 100);
        assert_eq!(table.slots.len(), slots, "no growth, no rehash");
        assert_eq!(table.get(100_000), Some(100_000));
        assert_eq!(table.get(1), None);
    }
}
