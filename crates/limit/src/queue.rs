//! The bounded priority wait queue: who waits for a token, in which order.
//!
//! Waiters are ordered by priority (higher first), then by arrival (FIFO within a priority).
//! Tokens go to the first waiter *for a given bucket* (the unkeyed bucket, or one key's
//! bucket) before any other, so arrivals are served in order and a waiter for one key never
//! blocks another key. A full queue sheds its lowest-priority, youngest waiter for a more
//! important arrival, or refuses the arrival.
//!
//! A waiter's future may be held without being polled. So a waiter behind it does not wait
//! on it: it takes the tokens for the first waiter when they are there, or refuses it once
//! its wait is over, and [`settle`](WaitQueue::settle)s it, as tokio's `Semaphore` assigns
//! permits to its waiters in order. A settled waiter is out of the queue; its future finds
//! the outcome when it is next polled, and one dropped with its tokens gives them back.
//!
//! This is plain data under the limiter's queue lock (a cold path: whoever is here waits
//! anyway); no clocks, no futures.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::task::Waker;

use tokio::time::Instant;

use crate::error::Error;

/// Which bucket a waiter draws from: `None` for the unkeyed bucket, else the key's hash.
pub(crate) type BucketId = Option<u64>;

type Slot = (Reverse<u32>, u64);

#[derive(Debug)]
struct Waiter {
    bucket: BucketId,
    weight: u32,
    enqueued: Instant,
    deadline: Instant,
    waker: Option<Waker>,
}

/// The first waiter for a bucket, as [`WaitQueue::first`] tells it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct First {
    pub(crate) id: u64,
    pub(crate) weight: u32,
    pub(crate) enqueued: Instant,
    pub(crate) deadline: Instant,
}

/// The outcome of a waiter taken out of the queue by another one.
#[derive(Debug)]
pub(crate) enum Settled {
    /// Its tokens were taken for it: admitted.
    Granted,
    /// Refused (it waited its `max_wait`, or a reload made it heavier than the burst).
    Refused(Error),
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
    /// Waiters settled by another, until their futures are polled or dropped.
    settled: BTreeMap<u64, Settled>,
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

    /// The tokens owed to the waiters for `bucket` served before `id`.
    pub(crate) fn weight_before(&self, id: u64, bucket: BucketId) -> u64 {
        self.waiters
            .iter()
            .take_while(|((_, other), _)| *other != id)
            .filter(|(_, w)| w.bucket == bucket)
            .map(|(_, w)| u64::from(w.weight))
            .sum()
    }

    /// Adds a waiter for `weight` tokens, queued at `enqueued` and waiting until `deadline`,
    /// shedding the least important one if the queue is at `capacity`.
    pub(crate) fn push(
        &mut self,
        priority: u32,
        bucket: BucketId,
        weight: u32,
        (enqueued, deadline): (Instant, Instant),
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
                enqueued,
                deadline,
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
    #[cfg(test)]
    pub(crate) fn is_head(&self, id: u64, bucket: BucketId) -> bool {
        self.first(bucket).is_some_and(|first| first.id == id)
    }

    /// The first waiter for `bucket`: the next to be given tokens.
    pub(crate) fn first(&self, bucket: BucketId) -> Option<First> {
        self.waiters
            .iter()
            .find(|(_, w)| w.bucket == bucket)
            .map(|(&(_, id), w)| First {
                id,
                weight: w.weight,
                enqueued: w.enqueued,
                deadline: w.deadline,
            })
    }

    /// Takes `id` out of the queue with its outcome, for its future to find, and wakes it
    /// and the next waiter for the same bucket.
    pub(crate) fn settle(&mut self, id: u64, outcome: Settled) {
        let Some(slot) = self.slot(id) else {
            return;
        };
        let Some(waiter) = self.remove_slot(slot) else {
            return;
        };
        self.settled.insert(id, outcome);
        if let Some(waker) = waiter.waker {
            waker.wake();
        }
        self.wake_head(waiter.bucket);
    }

    /// The outcome another waiter settled `id` with, if it did; forgotten once taken.
    pub(crate) fn take_settled(&mut self, id: u64) -> Option<Settled> {
        self.settled.remove(&id)
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

    /// When a waiter joined the queue and how long it may wait: these tests look at neither.
    fn times() -> (Instant, Instant) {
        let now = Instant::now();
        (now, now)
    }

    #[test]
    fn priority_then_fifo_and_heads_per_bucket() {
        let mut q = WaitQueue::default();
        let t = times();
        let Push::Queued(low) = q.push(1, None, 1, t, 8) else {
            panic!()
        };
        let Push::Queued(high) = q.push(5, None, 1, t, 8) else {
            panic!()
        };
        let Push::Queued(high2) = q.push(5, None, 1, t, 8) else {
            panic!()
        };
        let Push::Queued(other_key) = q.push(0, Some(7), 1, t, 8) else {
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
        let t = times();
        q.push(5, None, 3, t, 8);
        q.push(1, None, 4, t, 8);
        q.push(9, Some(7), 100, t, 8);
        q.push(5, None, 2, t, 8);
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
        let t = times();
        let Push::Queued(a) = q.push(1, None, 1, t, 2) else {
            panic!()
        };
        let Push::Queued(b) = q.push(1, None, 1, t, 2) else {
            panic!()
        };
        assert_eq!(
            q.push(1, None, 1, t, 2),
            Push::Full,
            "equal priority does not shed"
        );
        let Push::QueuedAfterShedding(c) = q.push(2, None, 1, t, 2) else {
            panic!()
        };
        assert!(q.contains(a) && !q.contains(b) && q.contains(c));
        assert_eq!(q.len(), 2);
        assert!(q.is_head(c, None));
    }

    #[test]
    fn a_settled_waiter_leaves_the_queue_and_its_outcome_waits_for_it() {
        let mut q = WaitQueue::default();
        let t = times();
        let Push::Queued(a) = q.push(0, None, 2, t, 8) else {
            panic!()
        };
        let Push::Queued(b) = q.push(0, None, 3, t, 8) else {
            panic!()
        };
        let Push::Queued(c) = q.push(0, None, 1, t, 8) else {
            panic!()
        };
        assert_eq!(q.weight_before(a, None), 0);
        assert_eq!(q.weight_before(c, None), 5, "the tokens of a and b");
        let first = q.first(None).unwrap();
        assert_eq!((first.id, first.weight), (a, 2));
        q.settle(a, Settled::Granted);
        assert!(!q.contains(a) && q.len() == 2);
        assert!(q.is_head(b, None), "next in line");
        assert_eq!(q.weight_before(c, None), 3, "a's tokens are taken");
        assert!(matches!(q.take_settled(a), Some(Settled::Granted)));
        assert!(q.take_settled(a).is_none(), "taken once");
        assert!(!q.remove(a), "no longer queued");
    }
}

/// Loom models of the queue's protocol as the limiter drives it: every operation under one
/// mutex (as `limiter.rs` does), a waiter registering its waker in the same critical
/// section in which it found it was not its turn, and every leaver waking the next head.
#[cfg(all(loom, test))]
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
            let t = (Instant::now(), Instant::now());
            let tokens = Arc::new(AtomicU32::new(0));
            let (a, b) = {
                let mut q = queue.lock().unwrap();
                let Push::Queued(a) = q.push(0, None, 1, t, 4) else {
                    unreachable!()
                };
                let Push::Queued(b) = q.push(0, None, 1, t, 4) else {
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
            let t = (Instant::now(), Instant::now());
            let tokens = Arc::new(AtomicU32::new(1));
            let (a, b, c) = {
                let mut q = queue.lock().unwrap();
                let mut push = |priority| match q.push(priority, None, 1, t, 3) {
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
                thread::spawn(move || queue.lock().unwrap().push(9, None, 1, t, 3))
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

    /// B, behind a head A whose future is held unpolled, takes A's token for it (settles
    /// it) while A is dropped, as `RateLimiter::serve_front` and `leave` do: in every
    /// interleaving the one token ends with B or back in the bucket, never with A gone, and
    /// nothing of A is left in the queue.
    #[test]
    fn loom_a_held_head_served_while_dropped_keeps_no_token() {
        loom::model(|| {
            let queue = Arc::new(Mutex::new(WaitQueue::default()));
            let tokens = Arc::new(AtomicU32::new(1));
            let t = (Instant::now(), Instant::now());
            let (a, b) = {
                let mut q = queue.lock().unwrap();
                let mut push = || match q.push(0, None, 1, t, 4) {
                    Push::Queued(id) => id,
                    other => unreachable!("{other:?}"),
                };
                (push(), push())
            };
            let take = |tokens: &AtomicU32| {
                tokens
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| t.checked_sub(1))
                    .is_ok()
            };

            let dropped = {
                let (queue, tokens) = (queue.clone(), tokens.clone());
                thread::spawn(move || {
                    let mut q = queue.lock().unwrap();
                    if q.remove(a) {
                        return;
                    }
                    let settled = q.take_settled(a);
                    drop(q);
                    if matches!(settled, Some(Settled::Granted)) {
                        tokens.fetch_add(1, Ordering::SeqCst);
                    }
                })
            };
            let b_admitted = {
                let mut q = queue.lock().unwrap();
                loop {
                    let first = q.first(None).expect("B waits");
                    if first.id == b {
                        let admitted = take(&tokens);
                        if admitted {
                            q.remove(b);
                        }
                        break admitted;
                    }
                    if !take(&tokens) {
                        break false;
                    }
                    q.settle(first.id, Settled::Granted);
                }
            };
            dropped.join().unwrap();

            let mut q = queue.lock().unwrap();
            assert!(
                !q.contains(a) && q.take_settled(a).is_none(),
                "A left a trace"
            );
            assert_eq!(q.contains(b), !b_admitted);
            assert_eq!(
                tokens.load(Ordering::SeqCst) + u32::from(b_admitted),
                1,
                "a token lost or made"
            );
        });
    }
}
