//! The bounded priority wait queue: who waits for a token, in which order.
//!
//! Waiters are ordered by priority (higher first), then by arrival (FIFO within a priority).
//! Only the first waiter *for a given bucket* (the unkeyed bucket, or one key's bucket) may
//! take tokens; the others sleep until it leaves, so arrivals are served in order and a
//! waiter for one key never blocks another key. A full queue sheds its lowest-priority,
//! youngest waiter for a more important arrival, or refuses the arrival.
//!
//! This is plain data under the limiter's queue lock (a cold path: whoever is here waits
//! anyway); no clocks, no futures.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::task::Waker;

/// Which bucket a waiter draws from: `None` for the unkeyed bucket, else the key's hash.
pub(crate) type BucketId = Option<u64>;

type Slot = (Reverse<u32>, u64);

#[derive(Debug)]
struct Waiter {
    bucket: BucketId,
    weight: u32,
    waker: Option<Waker>,
}

/// What happened to an arrival.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued under this id.
    Queued(u64),
    /// Queued under this id after shedding a lower-priority waiter.
    QueuedAfterShedding(u64),
    /// The queue is full of waiters at least as important.
    Full,
}

/// The waiters, in service order.
#[derive(Debug, Default)]
pub(crate) struct WaitQueue {
    waiters: BTreeMap<Slot, Waiter>,
    ids: BTreeMap<u64, u32>,
    next_id: u64,
}

impl WaitQueue {
    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Whether anyone waits for `bucket`.
    pub(crate) fn has_waiters_for(&self, bucket: BucketId) -> bool {
        self.waiters.values().any(|w| w.bucket == bucket)
    }

    /// The tokens that waiters for `bucket` served before a new arrival of `priority` (as
    /// important or more, and here first) will take: what that arrival waits behind.
    pub(crate) fn weight_ahead(&self, priority: u32, bucket: BucketId) -> u64 {
        self.waiters
            .iter()
            .take_while(|((Reverse(p), _), _)| *p >= priority)
            .filter(|(_, w)| w.bucket == bucket)
            .map(|(_, w)| u64::from(w.weight))
            .sum()
    }

    /// Adds a waiter for `weight` tokens, shedding the least important one if the queue is
    /// at `capacity`.
    pub(crate) fn push(
        &mut self,
        priority: u32,
        bucket: BucketId,
        weight: u32,
        capacity: usize,
    ) -> Push {
        let mut shed = false;
        if self.waiters.len() >= capacity {
            match self.waiters.last_key_value() {
                Some((&(Reverse(lowest), id), _)) if lowest < priority => {
                    if let Some(victim) = self.remove_slot((Reverse(lowest), id)) {
                        if let Some(waker) = victim.waker {
                            waker.wake();
                        }
                    }
                    shed = true;
                }
                _ => return Push::Full,
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.waiters.insert(
            (Reverse(priority), id),
            Waiter {
                bucket,
                weight,
                waker: None,
            },
        );
        self.ids.insert(id, priority);
        if shed {
            Push::QueuedAfterShedding(id)
        } else {
            Push::Queued(id)
        }
    }

    fn remove_slot(&mut self, slot: Slot) -> Option<Waiter> {
        self.ids.remove(&slot.1);
        self.waiters.remove(&slot)
    }

    fn slot(&self, id: u64) -> Option<Slot> {
        self.ids.get(&id).map(|p| (Reverse(*p), id))
    }

    /// Whether `id` is still queued (false once shed).
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.ids.contains_key(&id)
    }

    /// Whether `id` is the first waiter for its bucket.
    pub(crate) fn is_head(&self, id: u64, bucket: BucketId) -> bool {
        self.waiters
            .iter()
            .find(|(_, w)| w.bucket == bucket)
            .is_some_and(|((_, first), _)| *first == id)
    }

    /// Remembers the task to wake when `id`'s turn may have come.
    pub(crate) fn set_waker(&mut self, id: u64, waker: &Waker) {
        if let Some(slot) = self.slot(id) {
            if let Some(waiter) = self.waiters.get_mut(&slot) {
                match &waiter.waker {
                    Some(w) if w.will_wake(waker) => {}
                    _ => waiter.waker = Some(waker.clone()),
                }
            }
        }
    }

    /// Removes `id` (admitted, timed out or dropped) and wakes the next waiter for the same
    /// bucket, whose turn it now is. Returns whether `id` was still queued.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slot(id) else {
            return false;
        };
        let Some(waiter) = self.remove_slot(slot) else {
            return false;
        };
        self.wake_head(waiter.bucket);
        true
    }

    fn wake_head(&self, bucket: BucketId) {
        if let Some(next) = self.waiters.values().find(|w| w.bucket == bucket) {
            if let Some(waker) = &next.waker {
                waker.wake_by_ref();
            }
        }
    }

    /// Wakes every waiter (the rate changed: heads must recompute their wait).
    pub(crate) fn wake_all(&self) {
        for waiter in self.waiters.values() {
            if let Some(waker) = &waiter.waker {
                waker.wake_by_ref();
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn priority_then_fifo_and_heads_per_bucket() {
        let mut q = WaitQueue::default();
        let Push::Queued(low) = q.push(1, None, 1, 8) else {
            panic!()
        };
        let Push::Queued(high) = q.push(5, None, 1, 8) else {
            panic!()
        };
        let Push::Queued(high2) = q.push(5, None, 1, 8) else {
            panic!()
        };
        let Push::Queued(other_key) = q.push(0, Some(7), 1, 8) else {
            panic!()
        };
        assert!(q.is_head(high, None));
        assert!(!q.is_head(high2, None) && !q.is_head(low, None));
        assert!(q.is_head(other_key, Some(7)), "another key is not blocked");
        assert!(q.remove(high));
        assert!(q.is_head(high2, None), "FIFO within a priority");
        assert!(q.remove(high2));
        assert!(q.is_head(low, None));
        assert!(!q.remove(high), "removing twice is a no-op");
    }

    #[test]
    fn weight_ahead_counts_only_waiters_served_first_for_the_same_bucket() {
        let mut q = WaitQueue::default();
        q.push(5, None, 3, 8);
        q.push(1, None, 4, 8);
        q.push(9, Some(7), 100, 8);
        q.push(5, None, 2, 8);
        assert_eq!(
            q.weight_ahead(5, None),
            5,
            "equal priority, here first: ahead"
        );
        assert_eq!(
            q.weight_ahead(1, None),
            9,
            "everyone is ahead of the least important"
        );
        assert_eq!(
            q.weight_ahead(6, None),
            0,
            "a more important arrival goes first"
        );
        assert_eq!(
            q.weight_ahead(0, Some(7)),
            100,
            "another key's waiters do not count"
        );
    }

    #[test]
    fn full_queue_sheds_lowest_priority_youngest_first() {
        let mut q = WaitQueue::default();
        let Push::Queued(a) = q.push(1, None, 1, 2) else {
            panic!()
        };
        let Push::Queued(b) = q.push(1, None, 1, 2) else {
            panic!()
        };
        assert_eq!(
            q.push(1, None, 1, 2),
            Push::Full,
            "equal priority does not shed"
        );
        let Push::QueuedAfterShedding(c) = q.push(2, None, 1, 2) else {
            panic!()
        };
        assert!(q.contains(a) && !q.contains(b) && q.contains(c));
        assert_eq!(q.len(), 2);
        assert!(q.is_head(c, None));
    }
}
