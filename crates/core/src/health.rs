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
        if self.inner.readers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let counter = match outcome {
            Outcome::Success => &self.inner.successes,
            Outcome::Failure { .. } => &self.inner.failures,
            Outcome::Fatal => &self.inner.fatal,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.inner.latency_nanos.fetch_add(nanos, Ordering::Relaxed);
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
        // Counted before the cursor is read, so no call after the cursor goes unpublished.
        self.inner.readers.fetch_add(1, Ordering::Relaxed);
        HealthReader {
            last: Totals::load(&self.inner),
            signal: self.clone(),
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
}

impl Clone for HealthReader {
    fn clone(&self) -> Self {
        self.signal.inner.readers.fetch_add(1, Ordering::Relaxed);
        HealthReader {
            signal: self.signal.clone(),
            last: self.last,
        }
    }
}

impl Drop for HealthReader {
    fn drop(&mut self) {
        self.signal.inner.readers.fetch_sub(1, Ordering::Relaxed);
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
            latency_nanos: now.latency_nanos.wrapping_sub(self.last.latency_nanos),
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
    /// Sum of the latencies of all these calls, in nanoseconds.
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
