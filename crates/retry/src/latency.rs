//! A rotating, lock-free latency histogram and the hedge delay read from it.
//!
//! Latencies (in microseconds) fall into log-linear buckets: 8 linear buckets below 8 µs,
//! then 8 buckets per power of two, so a bucket is at most 12.5 % wide, up to about 19
//! hours (longer values land in the last bucket). There are two windows of buckets: the
//! active one takes records, the other holds the window before it. Recording is one
//! relaxed `fetch_add` on a bucket and one on the window's count; every [`RECOMPUTE_EVERY`]
//! records (and when the window first reaches `min_samples`) and at each rotation the
//! recording caller recomputes the percentile over both windows and stores it in one
//! atomic, which [`LatencyHistogram::delay`] reads. No lock, no allocation after
//! construction; a record racing a rotation may land in the window being cleared and be
//! lost, which a percentile does not notice.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower_prism_core::internal::nanos;

use crate::hedge_config::PercentileDelay;

/// Sub-buckets per power of two.
const SUB: usize = 8;
const SUB_BITS: u32 = 3;
/// The largest latency told apart, in microseconds (about 19 hours).
const MAX_MICROS: u64 = (1 << 36) - 1;
/// Buckets per window: the linear ones, then `SUB` per power of two from 2^3 to 2^35.
const BUCKETS: usize = SUB * (36 - SUB_BITS as usize + 1);
/// Records between two recomputations of the percentile.
pub(crate) const RECOMPUTE_EVERY: u32 = 64;
/// `estimate` before the histogram holds `min_samples` latencies.
const NONE: u64 = u64::MAX;

/// The bucket of a latency of `micros`.
fn bucket(micros: u64) -> usize {
    let v = micros.min(MAX_MICROS);
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // at least SUB_BITS
    let group = (e - SUB_BITS + 1) as usize;
    let sub = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    group * SUB + sub
}

/// The lowest latency (µs) in bucket `i`.
fn lower_bound(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let group = (i / SUB) as u32;
    let sub = (i % SUB) as u64;
    (SUB as u64 + sub) << (group - 1)
}

type Window = [AtomicU32; BUCKETS];

/// Two rotating windows of latency buckets, and the percentile last computed from them.
#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    windows: Box<[Window; 2]>,
    counts: [AtomicU32; 2],
    active: AtomicUsize,
    /// When the active window ends, in ns since `start`.
    rotate_at: AtomicU64,
    start: Instant,
    /// The delay last computed, in ns ([`NONE`]: too few samples).
    estimate: AtomicU64,
    percentile: AtomicU64, // f64 bits
    min_delay: AtomicU64,
    fallback: AtomicU64,
    min_samples: AtomicU32,
    window: AtomicU64,
}

impl LatencyHistogram {
    pub fn new(params: &PercentileDelay) -> Self {
        let h = LatencyHistogram {
            windows: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| AtomicU32::new(0))
            })),
            counts: [AtomicU32::new(0), AtomicU32::new(0)],
            active: AtomicUsize::new(0),
            rotate_at: AtomicU64::new(0),
            start: Instant::now(),
            estimate: AtomicU64::new(NONE),
            percentile: AtomicU64::new(0),
            min_delay: AtomicU64::new(0),
            fallback: AtomicU64::new(0),
            min_samples: AtomicU32::new(1),
            window: AtomicU64::new(1),
        };
        h.reconfigure(params);
        h.rotate_at
            .store(h.window.load(Ordering::Relaxed), Ordering::Relaxed);
        h
    }

    /// New parameters; the window length applies from the next rotation, the others at the
    /// next recomputation (done now).
    pub fn reconfigure(&self, p: &PercentileDelay) {
        self.percentile
            .store(p.percentile.to_bits(), Ordering::Relaxed);
        self.min_delay.store(nanos(p.min_delay), Ordering::Relaxed);
        self.fallback
            .store(nanos(p.fallback_delay), Ordering::Relaxed);
        self.min_samples.store(p.min_samples, Ordering::Relaxed);
        self.window.store(nanos(p.window).max(1), Ordering::Relaxed);
        self.recompute();
    }

    /// The hedge delay now: the percentile last computed, or the fallback delay.
    #[inline]
    pub fn delay(&self) -> Duration {
        let e = self.estimate.load(Ordering::Relaxed);
        Duration::from_nanos(if e == NONE {
            self.fallback.load(Ordering::Relaxed)
        } else {
            e
        })
    }

    /// Records one latency, observed at `now`.
    pub fn record(&self, latency: Duration, now: Instant) {
        let at = nanos(now.saturating_duration_since(self.start));
        let rotate_at = self.rotate_at.load(Ordering::Relaxed);
        if at >= rotate_at {
            self.rotate(at, rotate_at);
        }
        let active = self.active.load(Ordering::Acquire) & 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.windows[active][bucket(micros)].fetch_add(1, Ordering::Relaxed);
        let n = self.counts[active]
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        if n.is_multiple_of(RECOMPUTE_EVERY) || n == self.min_samples.load(Ordering::Relaxed) {
            self.recompute();
        }
    }

    /// Starts a new window (one caller wins the race to do it; the others record on).
    #[cold]
    fn rotate(&self, at: u64, rotate_at: u64) {
        let window = self.window.load(Ordering::Relaxed);
        if self
            .rotate_at
            .compare_exchange(rotate_at, at + window, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let active = self.active.load(Ordering::Relaxed) & 1;
        let next = active ^ 1;
        self.clear(next);
        if at >= rotate_at.saturating_add(window) {
            // idle for more than a window: what the active window holds is stale too
            self.clear(active);
        }
        self.active.store(next, Ordering::Release);
        self.recompute();
    }

    fn clear(&self, w: usize) {
        for b in &self.windows[w] {
            b.store(0, Ordering::Relaxed);
        }
        self.counts[w].store(0, Ordering::Relaxed);
    }

    /// The percentile over both windows, into `estimate`.
    fn recompute(&self) {
        let [a, b] = &*self.windows;
        let total: u64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| {
                u64::from(x.load(Ordering::Relaxed)) + u64::from(y.load(Ordering::Relaxed))
            })
            .sum();
        if total < u64::from(self.min_samples.load(Ordering::Relaxed)) || total == 0 {
            self.estimate.store(NONE, Ordering::Relaxed);
            return;
        }
        let p = f64::from_bits(self.percentile.load(Ordering::Relaxed));
        let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        let mut found = BUCKETS - 1;
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            seen += u64::from(x.load(Ordering::Relaxed)) + u64::from(y.load(Ordering::Relaxed));
            if seen >= rank {
                found = i;
                break;
            }
        }
        // The bucket's upper end: hedge a little late rather than early.
        let micros = if found + 1 < BUCKETS {
            lower_bound(found + 1)
        } else {
            MAX_MICROS
        };
        let delay = micros
            .saturating_mul(1_000)
            .max(self.min_delay.load(Ordering::Relaxed));
        self.estimate.store(delay.min(NONE - 1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn params(p: f64, min_samples: u32) -> PercentileDelay {
        PercentileDelay {
            min_samples,
            ..PercentileDelay::new(p)
        }
    }

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            17,
            100,
            1_000,
            65_535,
            1 << 30,
            MAX_MICROS,
        ] {
            let i = bucket(v);
            assert!(i >= last && i < BUCKETS, "{v} -> {i}");
            assert!(lower_bound(i) <= v, "{v}: lower {}", lower_bound(i));
            if i + 1 < BUCKETS {
                let upper = lower_bound(i + 1);
                assert!(v < upper, "{v}: upper {upper}");
                assert!(upper - lower_bound(i) <= lower_bound(i) / 8 + 1, "{v}");
            }
            last = i;
        }
        for i in 0..BUCKETS {
            assert_eq!(bucket(lower_bound(i)), i);
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_fallback_until_enough_samples_then_the_percentile() {
        let h = LatencyHistogram::new(&params(0.9, 10));
        assert_eq!(h.delay(), MS * 100);
        let now = Instant::now();
        for _ in 0..9 {
            h.record(MS * 20, now);
        }
        assert_eq!(h.delay(), MS * 100, "9 of 10 samples");
        h.record(MS * 20, now);
        let d = h.delay();
        assert!(d >= MS * 20 && d <= MS * 23, "{d:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_percentile_splits_the_distribution() {
        let h = LatencyHistogram::new(&params(0.85, 1));
        let now = Instant::now();
        for i in 0..(RECOMPUTE_EVERY * 4) {
            let ms = if i % 10 == 0 { 500 } else { 10 };
            h.record(MS * ms, now);
        }
        let d = h.delay();
        assert!(d >= MS * 10 && d < MS * 12, "p85 of 90 % at 10 ms: {d:?}");
        let h = LatencyHistogram::new(&params(0.95, 1));
        for i in 0..(RECOMPUTE_EVERY * 4) {
            let ms = if i % 10 == 0 { 500 } else { 10 };
            h.record(MS * ms, now);
        }
        let d = h.delay();
        assert!(
            d >= MS * 500 && d < MS * 563,
            "p95 above 90 % at 10 ms: {d:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_windows_rotate_out() {
        let h = LatencyHistogram::new(&params(0.5, 4));
        let start = Instant::now();
        for _ in 0..RECOMPUTE_EVERY {
            h.record(MS * 200, start);
        }
        assert!(h.delay() >= MS * 200);
        // one window later the old samples still count (two windows are read) ...
        let later = start + Duration::from_secs(10);
        for _ in 0..RECOMPUTE_EVERY * 2 {
            h.record(MS * 5, later);
        }
        let d = h.delay();
        assert!(d < MS * 6, "new samples are the majority: {d:?}");
        // ... and after an idle spell of two windows, nothing old is left
        let idle = later + Duration::from_secs(25);
        h.record(MS * 50, idle);
        assert_eq!(h.delay(), MS * 100, "1 sample of 4: the fallback");
    }

    #[tokio::test(start_paused = true)]
    async fn min_delay_is_a_floor() {
        let h = LatencyHistogram::new(&PercentileDelay {
            min_delay: MS * 30,
            ..params(0.5, 1)
        });
        h.record(Duration::from_micros(10), Instant::now());
        assert_eq!(h.delay(), MS * 30);
    }
}
