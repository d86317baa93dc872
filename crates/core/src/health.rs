//! Health signals: components publish call outcomes and latencies, others read them.
//!
//! The breaker and the balancer publish what they see; the adaptive rate limiter and the
//! retry budget subscribe and react. Publishing is two relaxed atomic adds (no lock, no
//! allocation), so it sits on hot paths, and none while no reader is subscribed (a
//! breaker with nobody reading its signal pays one plain load). Each subscriber keeps its
//! own cursor and reads the calls since its previous read.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::Outcome;

#[derive(Debug, Default)]
struct Inner {
    successes: AtomicU64,
    failures: AtomicU64,
    fatal: AtomicU64,
    latency_nanos: AtomicU64,
    /// Readers alive ([`HealthReader`]s and their clones): with none, nothing is counted,
    /// as nobody would read it (a reader's cursor starts when it subscribes).
    readers: AtomicUsize,
    /// Of them, the readers of latency ([`HealthSignal::subscribe`]); with none, the
    /// latency sum is not kept.
    latency_readers: AtomicUsize,
    circuit_open: AtomicBool,
    changed: Notify,
}

/// A shared, cloneable health channel. Every clone publishes to and reads from the same state.
///
/// ```
/// use std::time::Duration;
/// use tower_prism_core::{HealthSignal, Outcome};
///
/// let signal = HealthSignal::new();
/// let mut reader = signal.subscribe();
/// signal.record(Outcome::Success, Duration::from_millis(10));
/// signal.record(Outcome::RETRYABLE, Duration::from_millis(30));
/// let stats = reader.read();
/// assert_eq!(stats.calls(), 2);
/// assert_eq!(stats.failure_rate(), Some(0.5));
/// assert_eq!(stats.mean_latency(), Some(Duration::from_millis(20)));
/// assert_eq!(reader.read().calls(), 0); // nothing new since the last read
/// ```
#[derive(Debug, Clone, Default)]
pub struct HealthSignal {
    inner: Arc<Inner>,
}

impl HealthSignal {
    /// A new signal with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes one call's outcome and latency (to nobody, at the cost of one load, while
    /// no reader is subscribed).
    #[inline]
    pub fn record(&self, outcome: Outcome, latency: Duration) {
        let inner = &*self.inner;
        if inner.readers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let counter = match outcome {
            Outcome::Success => &inner.successes,
            Outcome::Failure { .. } => &inner.failures,
            Outcome::Fatal => &inner.fatal,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if inner.latency_readers.load(Ordering::Relaxed) != 0 {
            let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            inner.latency_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    /// Publishes whether a circuit breaker guarding this upstream is open. Wakes every
    /// subscriber waiting in [`HealthReader::changed`] when the value changes.
    pub fn set_circuit_open(&self, open: bool) {
        if self.inner.circuit_open.swap(open, Ordering::AcqRel) != open {
            self.inner.changed.notify_waiters();
        }
    }

    /// Whether a breaker has reported the upstream's circuit open.
    pub fn is_circuit_open(&self) -> bool {
        self.inner.circuit_open.load(Ordering::Acquire)
    }

    /// A reader whose first [`read`](HealthReader::read) reports the calls from now on.
    pub fn subscribe(&self) -> HealthReader {
        self.reader(true)
    }

    /// A reader of outcomes and the circuit's state only, for a subscriber that never
    /// looks at latency (a retry budget): its stats' `latency_nanos` is always 0, and while
    /// every reader is of this kind the publishers save the latency sum (an atomic add per
    /// call).
    pub fn subscribe_outcomes(&self) -> HealthReader {
        self.reader(false)
    }

    fn reader(&self, latency: bool) -> HealthReader {
        // Counted before the cursor is read, so no call after the cursor goes unpublished.
        self.inner.readers.fetch_add(1, Ordering::Relaxed);
        if latency {
            self.inner.latency_readers.fetch_add(1, Ordering::Relaxed);
        }
        HealthReader {
            last: Totals::load(&self.inner),
            signal: self.clone(),
            latency,
        }
    }

    /// Whether two handles share the same state.
    pub fn same_as(&self, other: &HealthSignal) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    successes: u64,
    failures: u64,
    fatal: u64,
    latency_nanos: u64,
}

impl Totals {
    fn load(inner: &Inner) -> Self {
        Totals {
            successes: inner.successes.load(Ordering::Relaxed),
            failures: inner.failures.load(Ordering::Relaxed),
            fatal: inner.fatal.load(Ordering::Relaxed),
            latency_nanos: inner.latency_nanos.load(Ordering::Relaxed),
        }
    }
}

/// One subscriber's view of a [`HealthSignal`]. While any reader is alive the signal's
/// publishers count every call; once the last one is dropped they stop.
#[derive(Debug)]
pub struct HealthReader {
    signal: HealthSignal,
    last: Totals,
    /// Whether it reads latency ([`HealthSignal::subscribe`]).
    latency: bool,
}

impl Clone for HealthReader {
    fn clone(&self) -> Self {
        let mut copy = self.signal.reader(self.latency);
        copy.last = self.last;
        copy
    }
}

impl Drop for HealthReader {
    fn drop(&mut self) {
        let inner = &self.signal.inner;
        inner.readers.fetch_sub(1, Ordering::Relaxed);
        if self.latency {
            inner.latency_readers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl HealthReader {
    /// The calls published since this reader's previous read (or since it subscribed).
    pub fn read(&mut self) -> HealthStats {
        let now = Totals::load(&self.signal.inner);
        let stats = HealthStats {
            successes: now.successes.wrapping_sub(self.last.successes),
            failures: now.failures.wrapping_sub(self.last.failures),
            fatal: now.fatal.wrapping_sub(self.last.fatal),
            latency_nanos: if self.latency {
                now.latency_nanos.wrapping_sub(self.last.latency_nanos)
            } else {
                0
            },
            circuit_open: self.signal.is_circuit_open(),
        };
        self.last = now;
        stats
    }

    /// Waits until the circuit-open flag changes.
    pub async fn changed(&self) {
        self.signal.inner.changed.notified().await
    }

    /// The signal this reader reads.
    pub fn signal(&self) -> &HealthSignal {
        &self.signal
    }
}

/// What a [`HealthReader`] saw between two reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthStats {
    /// Calls classified [`Outcome::Success`].
    pub successes: u64,
    /// Calls classified [`Outcome::Failure`].
    pub failures: u64,
    /// Calls classified [`Outcome::Fatal`] (a caller's fault, not the upstream's).
    pub fatal: u64,
    /// Sum of the latencies of all these calls, in nanoseconds (0 for a reader from
    /// [`HealthSignal::subscribe_outcomes`]).
    pub latency_nanos: u64,
    /// Whether a breaker reported the circuit open at the time of the read.
    pub circuit_open: bool,
}

impl HealthStats {
    /// All calls seen.
    pub fn calls(&self) -> u64 {
        self.successes + self.failures + self.fatal
    }

    /// Failures over successes plus failures (fatal calls say nothing of the upstream's
    /// health and are left out); `None` when there were none of either.
    pub fn failure_rate(&self) -> Option<f64> {
        let judged = self.successes + self.failures;
        (judged > 0).then(|| self.failures as f64 / judged as f64)
    }

    /// Mean latency of all calls; `None` when there were none.
    pub fn mean_latency(&self) -> Option<Duration> {
        let calls = self.calls();
        (calls > 0).then(|| Duration::from_nanos(self.latency_nanos / calls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_have_independent_cursors() {
        let signal = HealthSignal::new();
        let mut a = signal.subscribe();
        signal.record(Outcome::Success, Duration::from_millis(1));
        let mut b = signal.subscribe();
        signal.record(Outcome::Fatal, Duration::from_millis(1));
        let sa = a.read();
        let sb = b.read();
        assert_eq!((sa.successes, sa.fatal), (1, 1));
        assert_eq!((sb.successes, sb.fatal), (0, 1));
        assert_eq!(sb.failure_rate(), None, "fatal calls are not judged");
    }

    #[test]
    fn nothing_is_counted_while_nobody_reads() {
        let signal = HealthSignal::new();
        let published = || signal.inner.successes.load(Ordering::Relaxed);
        signal.record(Outcome::Success, Duration::from_millis(1));
        assert_eq!(published(), 0, "no reader: nothing counted");
        let mut reader = signal.subscribe();
        let copy = reader.clone();
        signal.record(Outcome::Success, Duration::from_millis(1));
        drop(reader.clone());
        signal.record(Outcome::Success, Duration::from_millis(3));
        let stats = reader.read();
        assert_eq!(stats.successes, 2);
        assert_eq!(stats.mean_latency(), Some(Duration::from_millis(2)));
        drop(reader);
        signal.record(Outcome::Success, Duration::from_millis(1));
        assert_eq!(published(), 3, "a clone still reads");
        drop(copy);
        signal.record(Outcome::Success, Duration::from_millis(1));
        assert_eq!(published(), 3, "the last reader gone: nothing counted");
    }

    #[test]
    fn the_latency_sum_is_kept_only_for_a_reader_of_latency() {
        let signal = HealthSignal::new();
        let summed = || signal.inner.latency_nanos.load(Ordering::Relaxed);
        let mut outcomes = signal.subscribe_outcomes();
        signal.record(Outcome::Success, Duration::from_millis(5));
        assert_eq!(summed(), 0, "no reader of latency: no sum");
        let mut latency = signal.subscribe();
        let copy = latency.clone();
        signal.record(Outcome::RETRYABLE, Duration::from_millis(5));
        drop(latency.clone());
        let stats = outcomes.read();
        assert_eq!(
            (stats.successes, stats.failures, stats.latency_nanos),
            (1, 1, 0)
        );
        assert_eq!(
            latency.read().mean_latency(),
            Some(Duration::from_millis(5))
        );
        drop(latency);
        drop(copy);
        signal.record(Outcome::Success, Duration::from_millis(5));
        assert_eq!(
            summed(),
            5_000_000,
            "the last reader of latency gone: no more sum"
        );
        assert_eq!(outcomes.read().successes, 1, "outcomes are still counted");
    }

    #[test]
    fn clones_share_state() {
        let signal = HealthSignal::new();
        let other = signal.clone();
        assert!(signal.same_as(&other));
        let mut reader = signal.subscribe();
        other.record(Outcome::NOT_RETRYABLE, Duration::ZERO);
        assert_eq!(reader.read().failures, 1);
        assert!(!HealthSignal::new().same_as(&signal));
    }

    #[tokio::test]
    async fn changed_wakes_on_circuit_flip_only() {
        let signal = HealthSignal::new();
        let reader = signal.subscribe();
        let waiter = tokio::spawn({
            let reader = reader.clone();
            async move { reader.changed().await }
        });
        tokio::task::yield_now().await;
        signal.set_circuit_open(false); // no change: no wake-up
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        signal.set_circuit_open(true);
        waiter.await.unwrap();
        assert!(reader.signal().is_circuit_open());
    }
}
