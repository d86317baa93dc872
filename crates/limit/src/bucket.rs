//! The token bucket, as GCRA (generic cell rate algorithm): one `u64` "theoretical arrival
//! time" (TAT) per bucket, advanced by a single compare-and-swap per admitted request.
//!
//! Time is plain nanoseconds since the limiter's epoch, so this module knows nothing of
//! clocks, services or futures and can be unit-, property- and loom-tested directly.
//!
//! With an emission interval `T` (nanoseconds per token) and a burst `b`, the tolerance is
//! `tau = T * b`. A request of weight `w` arriving at `now` is admitted when
//! `max(tat, now) + w*T <= now + tau`, and then moves `tat` there. Over any window of length
//! `d`, at most `d / T + b` tokens are admitted: the bucket refills one token per `T` and
//! holds at most `b`.

use tower_prism_core::sync::{AtomicU64, Ordering};

/// The shape of a bucket: the emission interval and the burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Nanoseconds between two tokens (the period divided by the rate); at least 1.
    pub interval_nanos: u64,
    /// Tokens the bucket holds when full; at least 1.
    pub burst: u32,
}

impl Quota {
    /// The tolerance `tau = interval * burst`, in nanoseconds.
    #[inline]
    pub fn tolerance(&self) -> u64 {
        self.interval_nanos.saturating_mul(u64::from(self.burst))
    }

    /// The steady rate in tokens per second.
    pub fn per_second(&self) -> f64 {
        1e9 / self.interval_nanos as f64
    }
}

/// Why a bucket refused a request: the time until it could be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// Nanoseconds until enough tokens will have refilled.
    pub retry_after_nanos: u64,
}

/// One GCRA step on a plain TAT: the new TAT when `weight` tokens fit at `now`, or how long
/// until they would. Shared by the atomic bucket and the keyed buckets (which sit under a
/// shard lock).
///
/// No arithmetic here saturates into an admission: a cost or TAT that would overflow `u64`
/// is a denial (with `retry_after_nanos = u64::MAX`), and the comparison is made on the
/// distance `new_tat - now`, so a huge tolerance cannot wrap the limit around.
/// ([`RateLimitConfig::validate`](crate::RateLimitConfig::validate) refuses shapes whose
/// tolerance comes anywhere near that range.)
#[inline]
pub fn step(tat: u64, now: u64, weight: u32, quota: Quota) -> Result<u64, Denied> {
    const NEVER: Denied = Denied {
        retry_after_nanos: u64::MAX,
    };
    let cost = quota
        .interval_nanos
        .checked_mul(u64::from(weight))
        .ok_or(NEVER)?;
    let new_tat = tat.max(now).checked_add(cost).ok_or(NEVER)?;
    // new_tat >= now: the time this bucket is now ahead of the clock.
    let ahead = new_tat - now;
    let tolerance = quota.tolerance();
    if ahead <= tolerance {
        Ok(new_tat)
    } else {
        Err(Denied {
            retry_after_nanos: ahead - tolerance,
        })
    }
}

/// The whole tokens an admitted call left in its bucket, worked out only when read (it
/// takes a division): by rate-limit headers, or by the tokens gauge when a metrics recorder
/// is installed.
///
/// Two words, not the TAT, the time and the quota it is worked out from: a two-field struct
/// moves in registers, where a larger one is copied through the stack, which on the admit
/// path cost more than the division it defers (store forwarding fails when two 8-byte
/// stores are read back as one 16-byte load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokensLeft {
    /// Nanoseconds of tolerance still free.
    free_nanos: u64,
    /// Nanoseconds per token; at least 1.
    interval_nanos: u64,
}

impl TokensLeft {
    /// What a bucket whose TAT is `tat` holds at `now`.
    #[inline]
    pub(crate) fn new(tat: u64, now: u64, quota: Quota) -> Self {
        TokensLeft {
            free_nanos: quota.tolerance().saturating_sub(tat.saturating_sub(now)),
            interval_nanos: quota.interval_nanos.max(1),
        }
    }

    /// None left (a call admitted from the queue: its bucket was empty).
    pub(crate) fn none() -> Self {
        TokensLeft {
            free_nanos: 0,
            interval_nanos: 1,
        }
    }

    /// Whole tokens left.
    #[inline]
    pub fn get(self) -> u64 {
        self.free_nanos / self.interval_nanos
    }
}

/// Whole tokens free at `now` in a bucket whose TAT is `tat`.
#[inline]
pub fn tokens_at(tat: u64, now: u64, quota: Quota) -> u64 {
    TokensLeft::new(tat, now, quota).get()
}

/// A TAT at `now` for a token interval going from `old` to `new` nanoseconds: the time it
/// is ahead of `now` (the tokens taken) scaled, so they refill at the new rate. A full
/// bucket's (not ahead) stays as it is: when it was last used tells a key's idleness.
pub fn rescaled(tat: u64, now: u64, old: u64, new: u64) -> u64 {
    if tat <= now {
        return tat;
    }
    let used = u128::from(tat - now);
    let scaled = used * u128::from(new) / u128::from(old.max(1));
    now.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
}

/// A lock-free GCRA bucket shared by every clone of a limiter.
#[derive(Debug)]
pub struct AtomicBucket {
    tat: AtomicU64,
    interval_nanos: AtomicU64,
    burst: AtomicU64,
}

impl AtomicBucket {
    /// A full bucket of the given shape.
    pub fn new(quota: Quota) -> Self {
        AtomicBucket {
            tat: AtomicU64::new(0),
            interval_nanos: AtomicU64::new(quota.interval_nanos.max(1)),
            burst: AtomicU64::new(u64::from(quota.burst.max(1))),
        }
    }

    /// The current shape.
    #[inline]
    pub fn quota(&self) -> Quota {
        Quota {
            interval_nanos: self.interval_nanos.load(Ordering::Relaxed),
            burst: self.burst.load(Ordering::Relaxed) as u32,
        }
    }

    /// Changes the shape at `now`; the tokens already taken stay taken (the TAT is
    /// rescaled to the new interval, so a halved rate doubles the time they take to refill).
    pub fn set_quota(&self, quota: Quota, now: u64) {
        let old = self.quota().interval_nanos;
        let new = quota.interval_nanos.max(1);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(rescaled(tat, now, old, new))
            });
        self.interval_nanos
            .store(quota.interval_nanos.max(1), Ordering::Relaxed);
        self.burst
            .store(u64::from(quota.burst.max(1)), Ordering::Relaxed);
    }

    /// Takes `weight` tokens at `now` (nanoseconds since the epoch): one CAS when free.
    /// Returns what is left.
    #[inline]
    pub fn try_acquire(&self, now: u64, weight: u32) -> Result<TokensLeft, Denied> {
        let quota = self.quota();
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let new_tat = step(tat, now, weight, quota)?;
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(TokensLeft::new(new_tat, now, quota)),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Gives back `weight` tokens taken by a request that was then never sent.
    pub fn refund(&self, weight: u32) {
        let cost = self
            .quota()
            .interval_nanos
            .saturating_mul(u64::from(weight));
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.saturating_sub(cost))
            });
    }

    /// Whole tokens free at `now`.
    pub fn tokens(&self, now: u64) -> u64 {
        tokens_at(self.tat.load(Ordering::Acquire), now, self.quota())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    fn quota(interval_ms: u64, burst: u32) -> Quota {
        Quota {
            interval_nanos: interval_ms * MS,
            burst,
        }
    }

    #[test]
    fn burst_then_refill_one_token_per_interval() {
        let bucket = AtomicBucket::new(quota(100, 3));
        let now = 5 * MS;
        assert_eq!(bucket.try_acquire(now, 1).map(TokensLeft::get), Ok(2));
        assert_eq!(bucket.try_acquire(now, 1).map(TokensLeft::get), Ok(1));
        assert_eq!(bucket.try_acquire(now, 1).map(TokensLeft::get), Ok(0));
        let denied = bucket.try_acquire(now, 1).unwrap_err();
        assert_eq!(denied.retry_after_nanos, 100 * MS);
        assert!(bucket.try_acquire(now + 99 * MS, 1).is_err());
        assert_eq!(
            bucket.try_acquire(now + 100 * MS, 1).map(TokensLeft::get),
            Ok(0)
        );
        // Long idle: the bucket is full again, but never more than the burst.
        assert_eq!(bucket.tokens(now + 10_000 * MS), 3);
    }

    #[test]
    fn weights_cost_several_tokens_and_refunds_give_them_back() {
        let bucket = AtomicBucket::new(quota(10, 5));
        assert_eq!(bucket.try_acquire(0, 4).map(TokensLeft::get), Ok(1));
        let denied = bucket.try_acquire(0, 3).unwrap_err();
        assert_eq!(denied.retry_after_nanos, 20 * MS);
        bucket.refund(4);
        assert_eq!(bucket.tokens(0), 5);
        assert!(
            bucket.try_acquire(0, 6).is_err(),
            "more than the burst never fits"
        );
        assert_eq!(
            bucket.try_acquire(0, 0).map(TokensLeft::get),
            Ok(5),
            "weight 0 is free"
        );
    }

    #[test]
    fn reconfigure_keeps_taken_tokens() {
        let bucket = AtomicBucket::new(quota(10, 2));
        bucket.try_acquire(0, 2).unwrap();
        bucket.set_quota(quota(10, 4), 0);
        assert_eq!(bucket.tokens(0), 2);
        assert_eq!(bucket.quota().burst, 4);
        bucket.set_quota(quota(40, 4), 0);
        assert_eq!(
            bucket.tokens(0),
            2,
            "two tokens still taken at a slower rate"
        );
        assert!(bucket.try_acquire(0, 3).is_err());
        assert!(bucket.try_acquire(79 * MS, 4).is_err());
        assert_eq!(
            bucket.try_acquire(80 * MS, 4).map(TokensLeft::get),
            Ok(0),
            "...and refilled at that rate"
        );
    }

    /// A full bucket's TAT (not ahead of now) stays where it was through a rate change:
    /// a keyed bucket's tells when the key was last used, and its idle timeout counts
    /// from then.
    #[test]
    fn a_rate_change_leaves_a_full_buckets_time_alone() {
        assert_eq!(rescaled(5 * MS, 9 * MS, 10 * MS, MS), 5 * MS);
        assert_eq!(rescaled(19 * MS, 9 * MS, 10 * MS, MS), 10 * MS);
        assert_eq!(rescaled(19 * MS, 9 * MS, MS, 10 * MS), 109 * MS);
    }

    #[test]
    fn an_overflowing_tolerance_never_turns_into_unlimited_admission() {
        // interval * burst = 2^65 ns does not fit a u64: saturating arithmetic used to pin
        // the TAT and the limit both at u64::MAX and then admit every request.
        let bucket = AtomicBucket::new(Quota {
            interval_nanos: 1 << 62,
            burst: 8,
        });
        let admitted = (0..100)
            .filter(|_| bucket.try_acquire(0, 1).is_ok())
            .count();
        assert!(admitted <= 8, "{admitted} admitted with a burst of 8");
        let denied = bucket.try_acquire(0, 1).unwrap_err();
        assert!(denied.retry_after_nanos > 0);
        // A weight whose cost overflows is a denial, not a free pass.
        let bucket = AtomicBucket::new(Quota {
            interval_nanos: u64::MAX / 2,
            burst: 4,
        });
        assert!(bucket.try_acquire(0, 3).is_err());
    }

    /// On the counter (`Clock::Tsc`, and `Clock::Auto` outside paused time) the bucket time
    /// is the counter's nanoseconds since the limiter started (quanta's `delta_as_nanos`,
    /// which returns 0 rather than wrapping when the counter reads behind the epoch). A long
    /// real sleep cannot be tested, so the arithmetic is, with huge jumps and readings that
    /// go backwards: nothing panics or wraps, a jump banks no more than the burst, and a
    /// reading from the past is never admitted early.
    #[test]
    fn huge_time_jumps_and_backward_readings_saturate_instead_of_wrapping() {
        let q = quota(100, 3);
        let bucket = AtomicBucket::new(q);
        const YEAR: u64 = 366 * 86_400 * 1_000_000_000;
        // A century of uptime: full again, never more than the burst.
        let century = 100 * YEAR;
        assert_eq!(bucket.tokens(century), 3);
        assert_eq!(bucket.try_acquire(century, 3).map(TokensLeft::get), Ok(0));
        assert_eq!(
            bucket
                .try_acquire(century, 1)
                .unwrap_err()
                .retry_after_nanos,
            100 * MS
        );
        // A reading 50 ms in the past (another core's counter): refused, and told the wait
        // from that reading, not a wrapped one.
        let behind = bucket.try_acquire(century - 50 * MS, 1).unwrap_err();
        assert_eq!(behind.retry_after_nanos, 150 * MS);
        // A reading of 0 (the counter behind the epoch: quanta returns 0): no underflow.
        assert_eq!(
            bucket.try_acquire(0, 1).unwrap_err().retry_after_nanos,
            century + 100 * MS
        );
        assert_eq!(bucket.tokens(0), 0);
        // The end of the u64 range: a cost that would pass u64::MAX is a denial, never an
        // admission; reshaping and refunds saturate.
        let end = AtomicBucket::new(q);
        assert_eq!(end.tokens(u64::MAX), 3);
        assert_eq!(
            end.try_acquire(u64::MAX, 1).unwrap_err().retry_after_nanos,
            u64::MAX
        );
        assert_eq!(
            end.try_acquire(u64::MAX - 100 * MS, 1).map(TokensLeft::get),
            Ok(2)
        );
        end.set_quota(quota(1, 3), u64::MAX);
        end.set_quota(quota(1_000, 3), 0);
        end.refund(u32::MAX);
        assert_eq!(end.tokens(u64::MAX), 3);
        // Rescaling a TAT a century ahead to a slower rate saturates instead of wrapping.
        let ahead = AtomicBucket::new(Quota {
            interval_nanos: YEAR,
            burst: 100,
        });
        assert!(ahead.try_acquire(0, 100).is_ok());
        ahead.set_quota(
            Quota {
                interval_nanos: u64::MAX,
                burst: 100,
            },
            0,
        );
        assert_eq!(ahead.tokens(u64::MAX - 1), 0);
        assert!(ahead.try_acquire(u64::MAX - 1, 1).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Over any window [a, b] of the arrivals, the admitted weight never exceeds
        /// (b - a) / T + burst.
        #[test]
        fn admitted_never_exceeds_rate_times_t_plus_burst(
            interval_ms in 1u64..50,
            burst in 1u32..8,
            arrivals in proptest::collection::vec((0u64..40, 0u32..4), 1..120),
        ) {
            let q = quota(interval_ms, burst);
            let bucket = AtomicBucket::new(q);
            let mut now = 0;
            let mut admitted = Vec::new();
            for (gap_ms, weight) in arrivals {
                now += gap_ms * MS;
                if bucket.try_acquire(now, weight).is_ok() {
                    admitted.push((now, u64::from(weight)));
                }
            }
            for i in 0..admitted.len() {
                let mut sum = 0;
                for &(t, w) in &admitted[i..] {
                    sum += w;
                    let window = t - admitted[i].0;
                    prop_assert!(
                        sum * q.interval_nanos <= window + q.tolerance(),
                        "{sum} tokens in {window}ns with {q:?}"
                    );
                }
            }
        }
    }
}

#[cfg(all(loom, test))]
mod loom_tests {
    use super::*;
    use loom::thread;
    use tower_prism_core::sync::Arc;

    /// Three threads race for a bucket of two tokens at the same instant: exactly two win,
    /// and the TAT ends where two admissions put it.
    #[test]
    fn loom_admit_cas_never_overadmits() {
        loom::model(|| {
            let quota = Quota {
                interval_nanos: 10,
                burst: 2,
            };
            let bucket = Arc::new(AtomicBucket::new(quota));
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let bucket = bucket.clone();
                    thread::spawn(move || bucket.try_acquire(100, 1).is_ok())
                })
                .collect();
            let wins = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|won| *won)
                .count();
            assert_eq!(wins, 2);
            assert_eq!(bucket.tokens(100), 0);
            assert_eq!(bucket.tokens(110), 1);
        });
    }

    /// A refund (a request admitted, then dropped before it was sent) racing another
    /// admission is never lost and never double-counted.
    #[test]
    fn loom_refund_races_with_admission() {
        loom::model(|| {
            let quota = Quota {
                interval_nanos: 10,
                burst: 1,
            };
            let bucket = Arc::new(AtomicBucket::new(quota));
            let a_won = bucket.try_acquire(100, 1).is_ok();
            assert!(a_won);
            let other = bucket.clone();
            let b = thread::spawn(move || other.try_acquire(100, 1).is_ok());
            bucket.refund(1);
            let b_won = b.join().unwrap();
            assert_eq!(bucket.tokens(100), if b_won { 0 } else { 1 });
        });
    }
}
