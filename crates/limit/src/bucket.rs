//! The token bucket, as GCRA (generic cell rate algorithm): one `u64` "theoretical arrival
//! time" (TAT) per bucket, advanced by a single compare-and-swap per admitted request (the
//! shared bucket's swaps the slot of its quota with it: see [`AtomicBucket`]).
//!
//! Time is plain nanoseconds since the limiter's epoch, so this module knows nothing of
//! clocks, services or futures and can be unit-, property- and loom-tested directly.
//!
//! With an emission interval `T` (nanoseconds per token) and a burst `b`, the tolerance is
//! `tau = T * b`. A request of weight `w` arriving at `now` is admitted when
//! `max(tat, now) + w*T <= now + tau`, and then moves `tat` there. Over any window of length
//! `d`, at most `d / T + b` tokens are admitted: the bucket refills one token per `T` and
//! holds at most `b`.

#[cfg(loom)]
use loom::sync::Mutex;
#[cfg(not(loom))]
use std::sync::Mutex;
use std::sync::PoisonError;

use tower_prism_core::sync::{AtomicU32, AtomicU64, Ordering};

/// The shape of a bucket: the emission interval and the burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Nanoseconds between two tokens (the period divided by the rate); at least 1.
    pub interval_nanos: u64,
    /// Tokens the bucket holds when full; at least 1.
    pub burst: u32,
}

/// A quota of a token every `interval_nanos`, `burst` at most (for the loom models' many).
#[cfg(all(loom, test))]
pub(crate) const fn quota(interval_nanos: u64, burst: u32) -> Quota {
    Quota {
        interval_nanos,
        burst,
    }
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

/// The largest TAT a shared bucket holds: 2^63 - 1 ns, 292 years after the limiter
/// started. A request that would move it further is refused as one whose cost overflows.
pub const MAX_TAT: u64 = (1 << 63) - 1;

/// A lock-free GCRA bucket shared by every clone of a limiter.
///
/// An admission decides on the TAT and the quota it is in the scale of, and a reload changes
/// both (the TAT is rescaled to the new interval). So that an admission sees the two either
/// before a reload or after it, never one of each, they are read through one atomic word:
/// its low 63 bits are the TAT, its top bit names which of two slots holds the quota the
/// TAT is in the scale of. A reload writes the new quota into the other slot, then swaps
/// in the rescaled TAT and the other slot's bit in one compare-and-swap. An admission (or a
/// refund) commits with a compare-and-swap of the whole word, so one decided on a quota a
/// reload has since replaced fails and decides again; a denial, which commits nothing, is
/// confirmed on the word as it is.
///
/// The slot bit tells one reload apart, not any number: an admission that read the word
/// and was then preempted for two whole reloads finds the same bit again, and succeeds if
/// the TAT is also the same (and would then commit a TAT in the scale of a quota no longer
/// in force). So that a full bucket's TAT, which no rescale moves, is not the same, a reload
/// sets it to the reload's own clock reading: the admission would have had to read a TAT
/// equal to the clock readings of both later reloads. (A bucket in debt comes back to the
/// same TAT only if the two rescales, at their readings, land on it to the nanosecond.)
/// Either takes a thread preempted between two of its instructions for two whole reloads,
/// and then counts that one admission's tokens in the wrong scale. A 64-bit generation in a
/// 16-byte word rules this out altogether, but its locked 16-byte compare-and-swap made
/// every admission half as slow again (x86_64): the 8-byte word keeps the admit path as it
/// was.
///
/// Admissions take no lock and allocate nothing; reloads take turns behind a mutex.
#[derive(Debug)]
pub struct AtomicBucket {
    /// The TAT (low 63 bits) and the slot of the quota it is in the scale of (top bit).
    state: AtomicU64,
    /// The two quotas: the one the state names and, after a reload, the one before it.
    /// Only a reload writes one, the one the state does not name, before naming it.
    quotas: [QuotaSlot; 2],
    /// Taken by a reload for its whole length: two writing the other slot at once would
    /// tear it.
    reload: Mutex<()>,
}

/// One quota. Stored with `Release` and loaded with `Acquire`, so a reader who sees a later
/// reload's value here also sees the state that reload moved on from.
#[derive(Debug)]
struct QuotaSlot {
    interval_nanos: AtomicU64,
    burst: AtomicU32,
}

impl QuotaSlot {
    fn new(quota: Quota) -> Self {
        QuotaSlot {
            interval_nanos: AtomicU64::new(quota.interval_nanos),
            burst: AtomicU32::new(quota.burst),
        }
    }

    #[inline]
    fn get(&self) -> Quota {
        Quota {
            interval_nanos: self.interval_nanos.load(Ordering::Acquire),
            burst: self.burst.load(Ordering::Acquire),
        }
    }

    fn set(&self, quota: Quota) {
        self.interval_nanos
            .store(quota.interval_nanos, Ordering::Release);
        self.burst.store(quota.burst, Ordering::Release);
    }
}

/// The state bit naming the second slot.
const SLOT_BIT: u64 = 1 << 63;

/// The state word of `tat` (at most [`MAX_TAT`]) in the scale of `slot`'s quota (0 or 1).
#[inline]
fn pack(tat: u64, slot: u64) -> u64 {
    slot << 63 | tat
}

/// The TAT of a state word.
#[inline]
fn tat_of(state: u64) -> u64 {
    state & MAX_TAT
}

/// The slot (0 or 1) of the quota a state word's TAT is in the scale of.
#[inline]
fn slot_of(state: u64) -> u64 {
    (state & SLOT_BIT) >> 63
}

/// `quota` as the bucket keeps it: an interval and a burst of at least 1.
fn shape(quota: Quota) -> Quota {
    Quota {
        interval_nanos: quota.interval_nanos.max(1),
        burst: quota.burst.max(1),
    }
}

impl AtomicBucket {
    /// A full bucket of the given shape.
    pub fn new(quota: Quota) -> Self {
        let quota = shape(quota);
        AtomicBucket {
            state: AtomicU64::new(pack(0, 0)),
            quotas: [QuotaSlot::new(quota), QuotaSlot::new(quota)],
            reload: Mutex::new(()),
        }
    }

    /// The quota a state word's TAT is in the scale of, as its slot holds it now (torn if
    /// a reload is rewriting it: then the word has moved on, which a compare-and-swap or
    /// [`confirm`](Self::confirm) finds).
    #[inline]
    fn quota_of(&self, state: u64) -> Quota {
        self.quotas[slot_of(state) as usize].get()
    }

    /// The state word and its quota, read together.
    fn snapshot(&self) -> (u64, Quota) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let quota = self.quota_of(state);
            match self.confirm(state) {
                None => return (state, quota),
                Some(actual) => state = actual,
            }
        }
    }

    /// The current shape.
    #[inline]
    pub fn quota(&self) -> Quota {
        self.snapshot().1
    }

    /// Changes the shape at `now`; the tokens already taken stay taken (the TAT is
    /// rescaled to the new interval, so a halved rate doubles the time they take to refill).
    /// The new shape and the rescaled TAT take effect together: an admission sees both or
    /// neither.
    pub fn set_quota(&self, quota: Quota, now: u64) {
        let _reload = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let new = shape(quota);
        let mut state = self.state.load(Ordering::Acquire);
        // Only a reload writes a slot, and this one holds the lock: the current slot is
        // stable, and no admission reads the other as its own before the word names it.
        let old = self.quota_of(state);
        let next = slot_of(state) ^ 1;
        self.quotas[next as usize].set(new);
        loop {
            let tat = tat_of(state);
            let tat = if tat <= now {
                // Full: any TAT up to now says so. Now, rather than the TAT as it is, so an
                // admission preempted since it read the word before the last reload does
                // not find it again after this one (see the type's doc).
                now.min(MAX_TAT)
            } else {
                rescaled(tat, now, old.interval_nanos, new.interval_nanos).min(MAX_TAT)
            };
            match self.state.compare_exchange(
                state,
                pack(tat, next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                // An admission or a refund moved the TAT (never the slot: reloads take
                // turns); rescale what it left.
                Err(actual) => state = actual,
            }
        }
    }

    /// Takes `weight` tokens at `now` (nanoseconds since the epoch): one compare-and-swap
    /// when free. Returns what is left.
    #[inline]
    pub fn try_acquire(&self, now: u64, weight: u32) -> Result<TokensLeft, Denied> {
        const NEVER: Denied = Denied {
            retry_after_nanos: u64::MAX,
        };
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let quota = self.quota_of(state);
            let decided = step(tat_of(state), now, weight, quota).and_then(|tat| {
                if tat <= MAX_TAT {
                    Ok(tat)
                } else {
                    Err(NEVER)
                }
            });
            match decided {
                Ok(new_tat) => match self.state.compare_exchange_weak(
                    state,
                    pack(new_tat, slot_of(state)),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Ok(TokensLeft::new(new_tat, now, quota)),
                    Err(actual) => state = actual,
                },
                Err(denied) => match self.confirm(state) {
                    None => return Err(denied),
                    Some(actual) => state = actual,
                },
            }
        }
    }

    /// Whether `state` is the word as it is (`None`), so that what was read from its slot
    /// was its quota and a decision on the two stands; else the word as it is, to decide on
    /// anew. (A slot read may have met a reload rewriting it, which then moved the word.)
    #[cold]
    fn confirm(&self, state: u64) -> Option<u64> {
        let actual = self.state.load(Ordering::Acquire);
        (actual != state).then_some(actual)
    }

    /// Gives back `weight` tokens taken by a request that was then never sent.
    pub fn refund(&self, weight: u32) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let cost = self
                .quota_of(state)
                .interval_nanos
                .saturating_mul(u64::from(weight));
            let tat = tat_of(state).saturating_sub(cost);
            match self.state.compare_exchange_weak(
                state,
                pack(tat, slot_of(state)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }

    /// Whole tokens free at `now`.
    pub fn tokens(&self, now: u64) -> u64 {
        let (state, quota) = self.snapshot();
        tokens_at(tat_of(state), now, quota)
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
        // The end of the shared bucket's range (MAX_TAT, 292 years) and of u64: a TAT that
        // would pass MAX_TAT, or a cost that would pass u64::MAX, is a denial, never an
        // admission; reshaping and refunds saturate.
        let end = AtomicBucket::new(q);
        assert_eq!(end.tokens(u64::MAX), 3);
        assert_eq!(
            end.try_acquire(u64::MAX, 1).unwrap_err().retry_after_nanos,
            u64::MAX
        );
        assert_eq!(
            end.try_acquire(MAX_TAT - 100 * MS + 1, 1)
                .unwrap_err()
                .retry_after_nanos,
            u64::MAX,
            "one nanosecond past the range"
        );
        assert_eq!(
            end.try_acquire(MAX_TAT - 100 * MS, 1).map(TokensLeft::get),
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
        assert_eq!(ahead.tokens(MAX_TAT - 1), 0);
        assert!(ahead.try_acquire(MAX_TAT - 1, 1).is_err());
        assert!(ahead.try_acquire(u64::MAX - 1, 1).is_err());
    }

    /// Reloads flipping between two shapes of equal tolerance, racing admissions of no
    /// tokens on a full bucket: each admission sees one shape whole, so it finds exactly
    /// that tolerance free. The interval and the burst were stored one after the other, so
    /// an admission between the two stores judged the bucket by the new interval and the
    /// old burst (a tolerance a thousand times larger) or the reverse (a thousand times
    /// smaller).
    #[test]
    fn an_admission_racing_reloads_sees_one_shape_whole() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;

        let fine = Quota {
            interval_nanos: 1,
            burst: 1_000,
        };
        let coarse = Quota {
            interval_nanos: 1_000,
            burst: 1,
        };
        let bucket = Arc::new(AtomicBucket::new(fine));
        let stop = Arc::new(AtomicBool::new(false));
        let reloader = {
            let (bucket, stop) = (bucket.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reloads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    bucket.set_quota(
                        if reloads.is_multiple_of(2) {
                            coarse
                        } else {
                            fine
                        },
                        0,
                    );
                    reloads += 1;
                }
                reloads
            })
        };
        let started = std::time::Instant::now();
        let mut mixed = Vec::new();
        let mut admissions = 0u64;
        while started.elapsed() < std::time::Duration::from_secs(2) && mixed.len() < 3 {
            let left = bucket.try_acquire(0, 0).unwrap();
            if left.free_nanos != 1_000 {
                mixed.push((left.free_nanos, left.interval_nanos));
            }
            admissions += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reloads = reloader.join().unwrap();
        assert!(
            mixed.is_empty(),
            "(free, interval) of admissions that saw a mixed shape: {mixed:?} \
             ({admissions} admissions, {reloads} reloads)"
        );
        assert!(reloads > 0 && admissions > 0);
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
            let quota = quota(10, 2);
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

    /// What a bucket shows of itself: whole tokens at `times`, and its shape.
    fn seen(bucket: &AtomicBucket, times: &[u64]) -> (Vec<u64>, Quota) {
        (
            times.iter().map(|&t| bucket.tokens(t)).collect(),
            bucket.quota(),
        )
    }

    /// What an admission decided: the whole tokens it left, or the wait it was told.
    type Decision = Result<u64, u64>;

    fn decide(bucket: &AtomicBucket, now: u64, weight: u32) -> Decision {
        bucket
            .try_acquire(now, weight)
            .map(TokensLeft::get)
            .map_err(|denied| denied.retry_after_nanos)
    }

    /// A bucket of shape `old` with `taken` tokens taken at `now`.
    fn bucket_with(old: Quota, taken: u32, now: u64) -> AtomicBucket {
        let bucket = AtomicBucket::new(old);
        if taken > 0 {
            bucket.try_acquire(now, taken).unwrap();
        }
        bucket
    }

    /// An admission of `weight` at `now` races reloads to `shapes` (in that order, on one
    /// thread, at `now`), on a bucket of shape `old` with `taken` tokens taken. Whatever
    /// the interleaving, the admission decides, and leaves the bucket, as it would have
    /// before the reloads, between two of them, or after them all: it sees a TAT and the
    /// shape it is in the scale of, never a TAT in one scale and another shape, nor one
    /// shape's interval with another's burst.
    fn admission_racing_reloads(old: Quota, shapes: &[Quota], taken: u32, weight: u32) {
        const NOW: u64 = 1_000;
        let times = [
            NOW,
            NOW + 10,
            NOW + 25,
            NOW + 50,
            NOW + 100,
            NOW + 250,
            NOW + 1_000,
        ];
        let shapes = shapes.to_vec();
        loom::model(move || {
            // Each serial order (worked out in the model: a loom atomic lives only there):
            // the admission after the first `k` reloads.
            let serial: Vec<(Decision, (Vec<u64>, Quota))> = (0..=shapes.len())
                .map(|k| {
                    let bucket = bucket_with(old, taken, NOW);
                    for &q in &shapes[..k] {
                        bucket.set_quota(q, NOW);
                    }
                    let decision = decide(&bucket, NOW, weight);
                    for &q in &shapes[k..] {
                        bucket.set_quota(q, NOW);
                    }
                    (decision, seen(&bucket, &times))
                })
                .collect();
            let bucket = Arc::new(bucket_with(old, taken, NOW));
            let admission = {
                let bucket = bucket.clone();
                thread::spawn(move || decide(&bucket, NOW, weight))
            };
            for &q in &shapes {
                bucket.set_quota(q, NOW);
            }
            let decision = admission.join().unwrap();
            let outcome = (decision, seen(&bucket, &times));
            assert!(
                serial.contains(&outcome),
                "{outcome:?} is none of the serial outcomes {serial:?}"
            );
        });
    }

    /// The rate drops tenfold on a full bucket, which no rescale moves: an admission that
    /// read the old shape and the full bucket must not land after the reload (its TAT, in
    /// the old scale, would count its token as a tenth of one).
    #[test]
    fn loom_a_rate_drop_racing_an_admission_to_a_full_bucket() {
        let old = quota(10, 2);
        let new = quota(100, 2);
        admission_racing_reloads(old, &[new], 0, 1);
    }

    /// Interval and burst change together (10 ns, 4 -> 100 ns, 1) with a token taken: the
    /// admission is admitted by the old shape and refused by the new one, never judged by
    /// the new interval and the old burst, or the old interval and the new burst.
    #[test]
    fn loom_an_admission_never_sees_one_shapes_interval_with_anothers_burst() {
        let old = quota(10, 4);
        let new = quota(100, 1);
        admission_racing_reloads(old, &[new], 1, 1);
    }

    /// The rate rises tenfold on an empty bucket: the admission is judged by the rescaled
    /// TAT and the new interval, or by the old ones, never the old TAT by the new interval.
    #[test]
    fn loom_a_rate_rise_racing_an_admission_to_an_empty_bucket() {
        let old = quota(100, 2);
        let new = quota(10, 2);
        admission_racing_reloads(old, &[new], 2, 1);
    }

    /// Two reloads (the rate down tenfold, then up to half the first rate with a smaller
    /// burst) race one admission to a full bucket, whose TAT no rescale moves: after both,
    /// the word names the first slot again, but not with the TAT the admission read (each
    /// reload of a full bucket sets it to its clock reading), so an admission still holding
    /// the first shape cannot land after both. (Left as it was, the TAT let it: its token,
    /// taken at the first interval, then counted as half a token.)
    #[test]
    fn loom_two_reloads_racing_an_admission_never_let_it_land_on_a_stale_shape() {
        let first = quota(10, 2);
        let slower = quota(100, 2);
        let half = quota(20, 1);
        admission_racing_reloads(first, &[slower, half], 0, 1);
    }

    /// A refund racing a reload gives back its tokens in the scale they are in: refunded
    /// before the rescale, or at the new interval after it.
    #[test]
    fn loom_a_refund_racing_a_reload_gives_back_its_tokens_once() {
        const NOW: u64 = 1_000;
        let old = quota(10, 2);
        let new = quota(100, 2);
        let times = [NOW, NOW + 100, NOW + 200];
        loom::model(move || {
            let serial: Vec<_> = [true, false]
                .into_iter()
                .map(|refund_first| {
                    let bucket = bucket_with(old, 2, NOW);
                    if refund_first {
                        bucket.refund(1);
                        bucket.set_quota(new, NOW);
                    } else {
                        bucket.set_quota(new, NOW);
                        bucket.refund(1);
                    }
                    seen(&bucket, &times)
                })
                .collect();
            let bucket = Arc::new(bucket_with(old, 2, NOW));
            let refund = {
                let bucket = bucket.clone();
                thread::spawn(move || bucket.refund(1))
            };
            bucket.set_quota(new, NOW);
            refund.join().unwrap();
            let outcome = seen(&bucket, &times);
            assert!(serial.contains(&outcome), "{outcome:?} not in {serial:?}");
        });
    }

    /// A refund (a request admitted, then dropped before it was sent) racing another
    /// admission is never lost and never double-counted.
    #[test]
    fn loom_refund_races_with_admission() {
        loom::model(|| {
            let quota = quota(10, 1);
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
