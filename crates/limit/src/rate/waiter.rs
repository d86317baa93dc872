//! The limiter's wait queue, seen from a request: joining it, asking for a turn, leaving.

use std::fmt;
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;
use tower_prism_core::internal::lock;
use tower_prism_core::sync::Ordering;

use super::limiter::{retry_after, retry_error, RateLimiter};
use crate::bucket::{Denied, TokensLeft};
use crate::error::Error;
use crate::queue::{BucketId, Push, Settled, WaitQueue};

/// Where [`RateLimiter::enqueue`] put a request.
pub(crate) enum Enqueued {
    /// Admitted at once (nobody waits for its bucket and its tokens were free), with what
    /// its bucket has left.
    Admitted(TokensLeft),
    /// In the queue.
    Waiting(Waiter),
}

/// What a queued request's turn brought.
pub(crate) enum Turn {
    /// Done waiting: admitted (`Ok`) or rejected.
    Done(Result<(), Error>),
    /// Sleep until then and ask again (unless woken earlier).
    SleepUntil(Instant),
}

impl RateLimiter {
    /// Joins the queue (or is admitted at once if nobody waits for this bucket and a token
    /// is free).
    pub(crate) fn enqueue(
        &self,
        bucket: BucketId,
        weight: u32,
        priority: u32,
        now: Instant,
    ) -> Result<Enqueued, Error> {
        let shared = &*self.shared;
        if let Some(error) = self.hopeless(weight) {
            // No burst holds it: queued, it would block the others until its `max_wait`.
            return Err(self.reject(error));
        }
        let at = self.since_epoch(now);
        let max_wait = shared.max_wait_nanos.load(Ordering::Relaxed);
        let capacity = shared.queue_capacity.load(Ordering::Relaxed);
        let mut queue = lock(&shared.queue);
        let owed = queue.has_waiters_for(bucket);
        if weight == 0 {
            // It takes no token, so none a waiter is owed: admitted at once, as governor's
            // `check_n(0)` always conforms. Its bucket's tokens are the waiters', if any.
            let none = TokensLeft::none();
            let tokens = if owed {
                none
            } else {
                self.acquire(bucket, 0, at).unwrap_or(none)
            };
            drop(queue);
            self.count_admitted(bucket, tokens);
            return Ok(Enqueued::Admitted(tokens));
        }
        let wait = if !owed {
            match self.acquire(bucket, weight, at) {
                Ok(tokens) => {
                    drop(queue);
                    self.count_admitted(bucket, tokens);
                    return Ok(Enqueued::Admitted(tokens));
                }
                Err(denied) => Some(denied.retry_after_nanos),
            }
        } else {
            self.wait_behind(&queue, bucket, weight, priority, at)
        };
        // Behind the waiters served first, this one would time out in the queue, or there
        // is no queue to wait in (a reload turned it off and it still holds its waiters):
        // say so now, with the real wait.
        if capacity == 0 || wait.is_some_and(|wait| wait > max_wait) {
            drop(queue);
            let denied = Denied {
                retry_after_nanos: wait.unwrap_or(u64::MAX),
            };
            return Err(self.reject(retry_error(denied)));
        }
        let deadline = now + Duration::from_nanos(max_wait);
        let id = match queue.push(priority, bucket, weight, (now, deadline), capacity) {
            Push::Queued(id) => id,
            Push::QueuedAfterShedding(id) => {
                shared.metrics.rejected_shed.increment(1);
                tracing::debug!(name = %shared.name, "rate limiter shed a lower-priority waiter");
                id
            }
            Push::Full => {
                drop(queue);
                let retry_after = retry_after(wait.unwrap_or(u64::MAX));
                return Err(self.reject(Error::QueueFull { retry_after }));
            }
        };
        self.publish_len(&queue);
        drop(queue);
        shared.metrics.queued.increment(1);
        Ok(Enqueued::Waiting(Waiter {
            limiter: self.clone(),
            id,
            bucket,
            weight,
            priority,
            enqueued: now,
            deadline,
            done: false,
        }))
    }

    /// How long until a new arrival of `priority` could be admitted, after the waiters
    /// served before it have taken their tokens; `None` if that cannot be told.
    fn wait_behind(
        &self,
        queue: &WaitQueue,
        bucket: BucketId,
        weight: u32,
        priority: u32,
        at: u64,
    ) -> Option<u64> {
        let needed = queue.weight_ahead(priority, bucket) + u64::from(weight);
        self.wait_for(bucket, needed, at)
    }

    /// How long until `needed` tokens will have come for `bucket`; `None` if that cannot be
    /// told (a sum beyond `u32`). Asks the backend for them plus a whole burst, which it
    /// always refuses (so nothing is taken), with a wait exactly one burst's refill longer.
    fn wait_for(&self, bucket: BucketId, needed: u64, at: u64) -> Option<u64> {
        if needed == 0 {
            return Some(0);
        }
        let backend = &self.shared.backend;
        let quota = backend.quota();
        let probe = u32::try_from(needed + u64::from(quota.burst)).ok()?;
        match backend.try_acquire(bucket, probe, at) {
            Err(denied) if denied.retry_after_nanos == u64::MAX => None,
            Err(denied) => Some(denied.retry_after_nanos.saturating_sub(quota.tolerance())),
            Ok(_) => {
                // Only if the burst grew in between (a reconfiguration): give them back.
                backend.refund(bucket, probe);
                None
            }
        }
    }

    /// A `try_acquire` while requests wait in the queue: admitted if none waits for
    /// `bucket` and a token is free; else rate limited for as long as the waiters' tokens
    /// and its own take, so it never takes a token a waiter is owed.
    pub(super) fn try_behind_queue(&self, bucket: BucketId, weight: u32) -> Result<(), Error> {
        if let Some(error) = self.hopeless(weight) {
            return Err(self.reject(error));
        }
        let at = self.now_nanos();
        let queue = lock(&self.shared.queue);
        let denied = if queue.has_waiters_for(bucket) {
            let wait = self.wait_behind(&queue, bucket, weight, 0, at);
            Denied {
                retry_after_nanos: wait.unwrap_or(u64::MAX),
            }
        } else {
            match self.acquire(bucket, weight, at) {
                Ok(tokens) => {
                    drop(queue);
                    self.count_admitted(bucket, tokens);
                    return Ok(());
                }
                Err(denied) => denied,
            }
        };
        drop(queue);
        Err(self.reject(retry_error(denied)))
    }

    /// A `try_acquire` of no tokens: whether one is free for `bucket` and owed to no
    /// waiter. Takes nothing (the backend is asked for more than a burst, which it always
    /// refuses), so it is neither an admission nor a rejection in the metrics.
    #[cold]
    pub(super) fn probe(&self, bucket: BucketId) -> Result<(), Error> {
        let at = self.now_nanos();
        let queue = lock(&self.shared.queue);
        // Behind the waiters for `bucket`, if any: their tokens come first.
        let wait = self.wait_behind(&queue, bucket, 1, 0, at);
        let owed = queue.has_waiters_for(bucket);
        drop(queue);
        match wait {
            Some(0) if !owed => Ok(()),
            wait => Err(retry_error(Denied {
                retry_after_nanos: wait.unwrap_or(u64::MAX).max(1),
            })),
        }
    }

    fn publish_len(&self, queue: &WaitQueue) {
        self.shared.queue_len.store(queue.len(), Ordering::Relaxed);
        self.shared.metrics.queue_depth.set(queue.len() as f64);
    }

    /// Asks whether a queued request may go now.
    pub(crate) fn poll_turn(&self, waiter: &mut Waiter, now: Instant, waker: &Waker) -> Turn {
        let shared = &*self.shared;
        let mut queue = lock(&shared.queue);
        if let Some(settled) = queue.take_settled(waiter.id) {
            // Another waiter took its tokens for it, or refused it (and counted that).
            drop(queue);
            waiter.done = true;
            if let Settled::Refused(error) = settled {
                return Turn::Done(Err(error));
            }
            self.count_waited(waiter, now);
            return Turn::Done(Ok(()));
        }
        if !queue.contains(waiter.id) {
            waiter.done = true;
            // Told, as a full queue's refusal is, when a token could come for it behind
            // the waiters that pushed it out.
            let at = self.since_epoch(now);
            let wait = self.wait_behind(&queue, waiter.bucket, waiter.weight, waiter.priority, at);
            let retry_after = retry_after(wait.unwrap_or(u64::MAX));
            return Turn::Done(Err(Error::Shed { retry_after }));
        }
        if let Some(error) = self.hopeless(waiter.weight) {
            // A reload lowered the burst below this request's weight (a reload wakes every
            // waiter): it would block the ones behind it until its `max_wait`.
            queue.remove(waiter.id);
            self.publish_len(&queue);
            drop(queue);
            waiter.done = true;
            return Turn::Done(Err(self.reject(error)));
        }
        let at = self.since_epoch(now);
        let wait = match self.serve_front(&mut queue, waiter, now, at) {
            Ok(tokens) => {
                queue.remove(waiter.id);
                self.publish_len(&queue);
                drop(queue);
                waiter.done = true;
                if waiter.bucket.is_none() {
                    shared.metrics.tokens.set(tokens);
                }
                self.count_waited(waiter, now);
                return Turn::Done(Ok(()));
            }
            Err(wait) => wait,
        };
        let refilled = wait.and_then(|nanos| now.checked_add(Duration::from_nanos(nanos)));
        let wake_at = refilled.map_or(waiter.deadline, |at| waiter.deadline.min(at));
        if now >= waiter.deadline {
            queue.remove(waiter.id);
            self.publish_len(&queue);
            drop(queue);
            waiter.done = true;
            let waited = now.saturating_duration_since(waiter.enqueued);
            return Turn::Done(Err(self.reject(Error::QueueTimeout { waited })));
        }
        queue.set_waker(waiter.id, waker);
        Turn::SleepUntil(wake_at)
    }

    /// Gives the tokens to the waiters for `waiter`'s bucket in order, up to and including
    /// `waiter`'s own (`Ok`, with what its bucket has left), as far as they have come. Else
    /// the time to look again (`None`: at its deadline): when its own tokens come if it is
    /// first, else when those of the waiters before it will have.
    ///
    /// A waiter ahead of `waiter` still here when its tokens are (or when its wait is over)
    /// has not been polled since they came: its future may be held by a caller that polls
    /// it later, or never. Its tokens are taken for it (its future finds them when polled;
    /// dropped, it gives them back) or it is refused, so that it holds no more than its own
    /// tokens, never the queue. Each waiter looks in when the one before it should have
    /// been served, so one held unpolled is served on time by the next, for one more
    /// wake-up per admission.
    fn serve_front(
        &self,
        queue: &mut WaitQueue,
        waiter: &Waiter,
        now: Instant,
        at: u64,
    ) -> Result<TokensLeft, Option<u64>> {
        let bucket = waiter.bucket;
        let mut settled = false;
        let result = loop {
            let Some(first) = queue.first(bucket) else {
                break Err(None);
            };
            if first.id == waiter.id {
                break self
                    .acquire(bucket, waiter.weight, at)
                    .map_err(|denied| Some(denied.retry_after_nanos));
            }
            let outcome = if let Some(error) = self.hopeless(first.weight) {
                Settled::Refused(self.reject(error))
            } else if now >= first.deadline {
                let waited = first.deadline.saturating_duration_since(first.enqueued);
                Settled::Refused(self.reject(Error::QueueTimeout { waited }))
            } else {
                match self.acquire(bucket, first.weight, at) {
                    Ok(tokens) => {
                        if bucket.is_none() {
                            self.shared.metrics.tokens.set(tokens);
                        }
                        Settled::Granted
                    }
                    Err(_) => {
                        // Look again when the waiters before this one should all have been
                        // served, not when its own tokens come: by then a small burst would
                        // have lost theirs, were they held unpolled.
                        let before = queue.weight_before(waiter.id, bucket);
                        break Err(self.wait_for(bucket, before, at).map(|nanos| nanos.max(1)));
                    }
                }
            };
            queue.settle(first.id, outcome);
            settled = true;
        };
        if settled {
            self.publish_len(queue);
        }
        result
    }

    /// Counts the admission of a request that waited in the queue.
    fn count_waited(&self, waiter: &Waiter, now: Instant) {
        let metrics = &self.shared.metrics;
        metrics.admitted.increment(1);
        let waited = now.saturating_duration_since(waiter.enqueued);
        metrics.queue_wait.record(waited.as_secs_f64());
    }

    fn leave(&self, waiter: &Waiter) {
        let mut queue = lock(&self.shared.queue);
        if queue.remove(waiter.id) {
            self.publish_len(&queue);
            return;
        }
        let settled = queue.take_settled(waiter.id);
        drop(queue);
        if let Some(Settled::Granted) = settled {
            // Its tokens were taken for it and never used: they are the next waiter's.
            self.refund(waiter.bucket, waiter.weight);
        }
    }
}

/// A request's place in the queue. Dropping it leaves the queue (and wakes whoever is next).
pub(crate) struct Waiter {
    limiter: RateLimiter,
    id: u64,
    pub(crate) bucket: BucketId,
    pub(crate) weight: u32,
    priority: u32,
    enqueued: Instant,
    pub(crate) deadline: Instant,
    done: bool,
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("id", &self.id)
            .field("weight", &self.weight)
            .finish()
    }
}

impl Waiter {
    pub(crate) fn poll_turn(&mut self, now: Instant, waker: &Waker) -> Turn {
        let limiter = self.limiter.clone();
        limiter.poll_turn(self, now, waker)
    }

    pub(crate) fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// When the request joined the queue.
    pub(crate) fn enqueued(&self) -> Instant {
        self.enqueued
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.done {
            self.limiter.leave(self);
        }
    }
}
