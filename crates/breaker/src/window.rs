//! Lock-free sliding windows: the last N calls (count) or the last T (time buckets).
//!
//! Both keep their counts in packed `u64` words so recording a call is a handful of atomic
//! operations with no lock and no allocation. Counts are exact when calls are recorded one
//! at a time; under concurrency a reader may briefly see a torn total (one writer's slot
//! swap applied before another's), which [`Counts::is_consistent`] detects and callers skip.

use tower_prism_core::internal::Divisor;
use tower_prism_core::sync::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Calls, failures and slow calls in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls recorded.
    pub calls: u32,
    /// Calls that counted as failures.
    pub failures: u32,
    /// Calls slower than the slow-call duration.
    pub slow: u32,
}

impl Counts {
    /// Whether these counts can be real for a window holding at most `capacity` calls.
    pub fn is_consistent(&self, capacity: u64) -> bool {
        u64::from(self.calls) <= capacity && self.failures <= self.calls && self.slow <= self.calls
    }

    /// Failures over calls (0 with no calls).
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// Slow calls over calls (0 with no calls).
    pub fn slow_call_rate(&self) -> f64 {
        ratio(self.slow, self.calls)
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

/// A sliding window of either kind.
#[derive(Debug)]
pub enum SlidingWindow {
    /// The last N calls.
    Count(CountWindow),
    /// The last T, bucketed.
    Time(TimeWindow),
}

impl SlidingWindow {
    /// Records one call completed at `now_nanos` and returns the window's counts after it.
    #[inline]
    pub fn record(&self, failure: bool, slow: bool, now_nanos: u64) -> Counts {
        match self {
            SlidingWindow::Count(w) => w.record(failure, slow),
            SlidingWindow::Time(w) => w.record(failure, slow, now_nanos),
        }
    }

    /// The counts at `now_nanos`.
    pub fn counts(&self, now_nanos: u64) -> Counts {
        match self {
            SlidingWindow::Count(w) => w.counts(),
            SlidingWindow::Time(w) => w.counts(now_nanos),
        }
    }

    /// Forgets every call.
    pub fn clear(&self) {
        match self {
            SlidingWindow::Count(w) => w.clear(),
            SlidingWindow::Time(w) => w.clear(),
        }
    }

    /// Upper bound of `calls` in a consistent read.
    pub fn capacity(&self) -> u64 {
        match self {
            SlidingWindow::Count(w) => w.slots.len() as u64,
            SlidingWindow::Time(w) => w.buckets.len() as u64 * TIME_MAX,
        }
    }
}

// Count window totals: calls | failures << 21 | slow << 42 (21 bits each).
const COUNT_BITS: u32 = 21;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

// Slot codes: 0 empty, else 1 | failure << 1 | slow << 2.
const SUCCESS: u32 = 1;

fn slot_code(failure: bool, slow: bool) -> u32 {
    1 | (u32::from(failure) << 1) | (u32::from(slow) << 2)
}

fn slot_weight(code: u32) -> u64 {
    if code == 0 {
        return 0;
    }
    1 | (u64::from((code >> 1) & 1) << COUNT_BITS)
        | (u64::from((code >> 2) & 1) << (2 * COUNT_BITS))
}

fn unpack_count(word: u64) -> Counts {
    Counts {
        calls: (word & COUNT_MASK) as u32,
        failures: ((word >> COUNT_BITS) & COUNT_MASK) as u32,
        slow: ((word >> (2 * COUNT_BITS)) & COUNT_MASK) as u32,
    }
}

/// The last N calls: a ring of slots plus packed running totals.
///
/// Recording claims the next slot (`fetch_add` on a cursor), swaps the call's code into it and
/// adds (new - old) to the packed totals in one `fetch_add`, so the totals always converge to
/// the sum of the slots. A success recorded while every slot holds one writes nothing.
#[derive(Debug)]
pub struct CountWindow {
    slots: Box<[AtomicU32]>,
    /// `u64::MAX / slots + 1`, for a division-free `cursor % slots` (Lemire's fastmod).
    magic: u64,
    /// The totals of a full window of successes (`slots` calls, no failure, none slow).
    full_of_successes: u64,
    hot: Written,
}

/// The two words every call writes, on a cache line of their own so that threads reading
/// the breaker's other (read-mostly) state do not keep losing that line.
#[derive(Debug)]
#[repr(align(64))]
struct Written {
    /// Calls recorded, wrapping at 2^32 (where the ring restarts at slot 0: once every 4
    /// billion calls one slot is overwritten before its turn).
    cursor: AtomicU32,
    totals: AtomicU64,
}

impl CountWindow {
    /// A window of `size` calls (1 ..= 2^20).
    pub fn new(size: u32) -> Self {
        let size = size.clamp(1, 1 << 20);
        CountWindow {
            slots: (0..size).map(|_| AtomicU32::new(0)).collect(),
            magic: (u64::MAX / u64::from(size)).wrapping_add(1),
            full_of_successes: u64::from(size),
            hot: Written {
                cursor: AtomicU32::new(0),
                totals: AtomicU64::new(0),
            },
        }
    }

    /// Records one call and returns the totals right after it.
    #[inline]
    pub fn record(&self, failure: bool, slow: bool) -> Counts {
        let code = slot_code(failure, slow);
        // A healthy breaker's steady state: every slot holds a success and so does this
        // call. Whichever slot it took, the ring would read the same, so it takes none and
        // writes nothing: the next call that is not a plain success takes the slot this one
        // would have, and the last N calls still count N - 1 successes and it. The hot line
        // is then only read, and threads recording at once stop taking it from each other
        // (the cursor's `fetch_add` was every call's one locked write). Totals lag the
        // slots only while a record is between its swap and its `fetch_add`; a record
        // skipped then is ordered before that one.
        let totals = self.hot.totals.load(Relaxed);
        if code == SUCCESS && totals == self.full_of_successes {
            return unpack_count(totals);
        }
        let index = self.slot_index(self.hot.cursor.fetch_add(1, Relaxed));
        let slot = &self.slots[index];
        // The steady state writes what the slot already holds (a success over a success):
        // nothing changes, so neither the slot nor the totals take an atomic write. A
        // record of a later lap racing for the slot swaps and accounts for its own change.
        if slot.load(Relaxed) == code {
            return unpack_count(self.hot.totals.load(Relaxed));
        }
        let old = slot.swap(code, Relaxed);
        let delta = slot_weight(code).wrapping_sub(slot_weight(old));
        unpack_count(
            self.hot
                .totals
                .fetch_add(delta, Relaxed)
                .wrapping_add(delta),
        )
    }

    /// `cursor % slots`, without a division: for a 32-bit numerator and divisor,
    /// `((magic * cursor mod 2^64) * slots) >> 64` is exact (Lemire, Kaser, Kurz 2019).
    fn slot_index(&self, cursor: u32) -> usize {
        let low = self.magic.wrapping_mul(u64::from(cursor));
        ((u128::from(low) * self.slots.len() as u128) >> 64) as usize
    }

    /// The current totals.
    pub fn counts(&self) -> Counts {
        unpack_count(self.hot.totals.load(Relaxed))
    }

    /// Empties every slot (subtracting what each held, so concurrent records stay balanced).
    pub fn clear(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Relaxed);
            if old != 0 {
                self.hot.totals.fetch_sub(slot_weight(old), Relaxed);
            }
        }
    }

    /// The sum of the slots (what the totals converge to); for tests.
    #[cfg(test)]
    pub fn slot_sum(&self) -> Counts {
        let sum = self
            .slots
            .iter()
            .map(|s| slot_weight(s.load(Relaxed)))
            .fold(0u64, u64::wrapping_add);
        unpack_count(sum)
    }
}

// Time buckets: lap tag (10 bits) << 54 | calls << 36 | failures << 18 | slow (18 bits each).
const TIME_BITS: u32 = 18;
const TIME_MAX: u64 = (1 << TIME_BITS) - 1;
const TAG_SHIFT: u32 = 3 * TIME_BITS;
const TAG_MASK: u64 = (1 << (64 - TAG_SHIFT)) - 1;

fn unpack_time(word: u64) -> Counts {
    Counts {
        calls: ((word >> (2 * TIME_BITS)) & TIME_MAX) as u32,
        failures: ((word >> TIME_BITS) & TIME_MAX) as u32,
        slow: (word & TIME_MAX) as u32,
    }
}

/// The calls of the last T, kept in B buckets of T/B each.
///
/// Each bucket is one packed word tagged with its "lap" (`epoch / B`, where `epoch` is
/// `now / bucket width`), so a writer that finds an old lap's counts replaces them in the same
/// compare-and-swap that adds its call; the writer that moves the window to a new slice
/// clears the buckets of the slices skipped since the previous one. A bucket holds at most 2^18 - 1 calls; further calls
/// in the same slice are not counted (use more buckets for very high rates).
#[derive(Debug)]
pub struct TimeWindow {
    buckets: Box<[AtomicU64]>,
    /// The slice width in nanoseconds (every record divides a reading by it).
    width_nanos: Divisor,
    /// The latest epoch recorded (+1; 0 = none), to spot a window left idle for a whole
    /// window length, whose stale buckets are cleared.
    latest: AtomicU64,
}

impl TimeWindow {
    /// A window of `buckets` slices of `width_nanos` each.
    pub fn new(width_nanos: u64, buckets: u32) -> Self {
        TimeWindow {
            buckets: (0..buckets.max(1)).map(|_| AtomicU64::new(0)).collect(),
            width_nanos: Divisor::new(width_nanos),
            latest: AtomicU64::new(0),
        }
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    /// Records one call at `now_nanos` and returns the window's counts after it.
    pub fn record(&self, failure: bool, slow: bool, now_nanos: u64) -> Counts {
        let epoch = self.width_nanos.divide(now_nanos);
        let len = self.len();
        let mut latest = self.latest.load(Relaxed);
        while latest <= epoch {
            // first call of a new slice (rare): the slices skipped since the latest one had
            // no calls, so clear what earlier laps left in their buckets (all of them after a
            // whole idle window). A bucket then only ever holds its current or previous lap,
            // which the tag tells apart; it never aliases a lap 2^10 laps old.
            match self
                .latest
                .compare_exchange_weak(latest, epoch + 1, Relaxed, Relaxed)
            {
                Ok(_) => {
                    if latest > 0 {
                        // after a whole idle window, this slice's own bucket may hold a lap
                        // whose tag aliases: clear it too
                        let to = if latest + len <= epoch + 1 {
                            epoch + 1
                        } else {
                            epoch
                        };
                        let from = latest.max((epoch + 1).saturating_sub(len));
                        for skipped in from..to {
                            self.buckets[(skipped % len) as usize].store(0, Relaxed);
                        }
                    }
                    break;
                }
                Err(actual) => latest = actual,
            }
        }
        let bucket = &self.buckets[(epoch % self.len()) as usize];
        let tag = (epoch / self.len()) & TAG_MASK;
        let add = (1 << (2 * TIME_BITS)) | (u64::from(failure) << TIME_BITS) | u64::from(slow);
        let mut current = bucket.load(Relaxed);
        loop {
            let next = if current >> TAG_SHIFT == tag {
                if unpack_time(current).calls as u64 == TIME_MAX {
                    break; // saturated slice
                }
                current + add
            } else {
                (tag << TAG_SHIFT) | add
            };
            match bucket.compare_exchange_weak(current, next, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.counts(now_nanos)
    }

    /// The counts of the buckets inside the window at `now_nanos`.
    pub fn counts(&self, now_nanos: u64) -> Counts {
        let epoch = self.width_nanos.divide(now_nanos);
        let latest = self.latest.load(Relaxed);
        if latest == 0 || latest + self.len() <= epoch + 1 {
            return Counts::default(); // nothing recorded within the last window
        }
        let mut sum = Counts::default();
        let len = self.len();
        for (i, bucket) in self.buckets.iter().enumerate() {
            let i = i as u64;
            // the latest epoch <= now that maps to bucket i
            let back = (epoch + len - i) % len;
            let Some(e) = epoch.checked_sub(back) else {
                continue;
            };
            let word = bucket.load(Relaxed);
            if word >> TAG_SHIFT == (e / len) & TAG_MASK {
                let c = unpack_time(word);
                sum.calls += c.calls;
                sum.failures += c.failures;
                sum.slow += c.slow;
            }
        }
        sum
    }

    /// Forgets every call.
    pub fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(loom, test))]
mod loom_tests;
