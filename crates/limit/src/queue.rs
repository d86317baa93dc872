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

/// Loom models of the queue's protocol as the limiter drives it: every operation under one
/// mutex (as `limiter.rs` does), a waiter registering its waker in the same critical
/// section in which it found it was not its turn, and every leaver waking the next head.
#[cfg(loom)]
mod loom_tests {
    use std::task::{Wake, Waker};

    use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    use super::*;

    /// A task's wake-up flag.
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag() -> (std::sync::Arc<Flag>, Waker) {
        let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
        (flag.clone(), Waker::from(flag))
    }

    /// One poll of a waiter, as `RateLimiter::poll_turn` does it: admitted if it is the
    /// head and a token is free, else it leaves its waker. Returns whether it was admitted.
    fn poll_turn(queue: &Mutex<WaitQueue>, tokens: &AtomicU32, id: u64, waker: &Waker) -> bool {
        let mut queue = queue.lock().unwrap();
        if queue.is_head(id, None)
            && tokens
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| t.checked_sub(1))
                .is_ok()
        {
            queue.remove(id);
            return true;
        }
        queue.set_waker(id, waker);
        false
    }

    /// A (the head) is cancelled while a refund wakes every waiter and B, behind it, polls:
    /// in every interleaving B is either admitted or left with a wake-up to act on (it is
    /// the head now and a token is free), and the queue holds exactly the waiters alive.
    #[test]
    fn loom_a_cancelled_head_never_loses_the_next_waiters_wake_up() {
        loom::model(|| {
            let queue = Arc::new(Mutex::new(WaitQueue::default()));
            let tokens = Arc::new(AtomicU32::new(0));
            let (a, b) = {
                let mut q = queue.lock().unwrap();
                let Push::Queued(a) = q.push(0, None, 1, 4) else {
                    unreachable!()
                };
                let Push::Queued(b) = q.push(0, None, 1, 4) else {
                    unreachable!()
                };
                (a, b)
            };
            let (a_flag, a_waker) = flag();
            queue.lock().unwrap().set_waker(a, &a_waker);

            let refund = {
                let (queue, tokens) = (queue.clone(), tokens.clone());
                thread::spawn(move || {
                    tokens.fetch_add(1, Ordering::SeqCst);
                    queue.lock().unwrap().wake_all();
                })
            };
            let cancel = {
                let queue = queue.clone();
                thread::spawn(move || {
                    queue.lock().unwrap().remove(a);
                })
            };
            let (b_flag, b_waker) = flag();
            let b_admitted = poll_turn(&queue, &tokens, b, &b_waker);
            refund.join().unwrap();
            cancel.join().unwrap();

            let q = queue.lock().unwrap();
            assert!(!q.contains(a));
            if b_admitted {
                assert_eq!(q.len(), 0, "no slot left behind");
            } else {
                assert_eq!(q.len(), 1);
                assert!(q.is_head(b, None));
                assert_eq!(tokens.load(Ordering::SeqCst), 1);
                assert!(
                    b_flag.0.load(Ordering::SeqCst),
                    "B is the head with a token free and was never woken"
                );
            }
            let _ = a_flag;
        });
    }

    /// A head being admitted (taking the only token) races with the waiter behind it
    /// polling and with a more important arrival that, if the queue is still full, sheds
    /// the least important waiter: the shed waiter is always woken (to learn it was shed),
    /// at most one token is taken, and the queue holds exactly the waiters still in it.
    #[test]
    fn loom_admission_and_shedding_leak_no_slot_and_wake_the_shed() {
        loom::model(|| {
            let queue = Arc::new(Mutex::new(WaitQueue::default()));
            let tokens = Arc::new(AtomicU32::new(1));
            let (a, b, c) = {
                let mut q = queue.lock().unwrap();
                let mut push = |priority| match q.push(priority, None, 1, 3) {
                    Push::Queued(id) => id,
                    other => unreachable!("{other:?}"),
                };
                (push(2), push(1), push(0))
            };
            let (c_flag, c_waker) = flag();
            queue.lock().unwrap().set_waker(c, &c_waker);

            let head = {
                let (queue, tokens) = (queue.clone(), tokens.clone());
                thread::spawn(move || {
                    let (_, waker) = flag();
                    poll_turn(&queue, &tokens, a, &waker)
                })
            };
            let arrival = {
                let queue = queue.clone();
                thread::spawn(move || queue.lock().unwrap().push(9, None, 1, 3))
            };
            let (_, b_waker) = flag();
            let b_admitted = poll_turn(&queue, &tokens, b, &b_waker);
            let a_admitted = head.join().unwrap();
            let pushed = arrival.join().unwrap();

            assert!(
                !b_admitted,
                "B is never the head while A or the arrival waits"
            );
            let taken = 1 - tokens.load(Ordering::SeqCst);
            assert_eq!(taken, u32::from(a_admitted));
            let q = queue.lock().unwrap();
            assert_eq!(q.contains(a), !a_admitted);
            assert!(q.contains(b));
            let (vip, shed) = match pushed {
                Push::QueuedAfterShedding(vip) => (vip, true),
                Push::Queued(vip) => (vip, false),
                Push::Full => panic!("a more important arrival is never refused"),
            };
            assert!(q.contains(vip) && q.is_head(vip, None));
            assert_eq!(q.contains(c), !shed);
            if shed {
                assert!(
                    c_flag.0.load(Ordering::SeqCst),
                    "the shed waiter was not woken"
                );
            }
            let alive = 2 + usize::from(!a_admitted) + usize::from(!shed);
            assert_eq!(q.len(), alive, "no slot leaked");
        });
    }
}
