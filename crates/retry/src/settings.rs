//! The settings a call reads when it starts, swappable at run time without a lock on the
//! reading side (a sequence lock over atomics).

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tower_prism_core::internal::lock;

use crate::backoff::{Backoff, BackoffKind, Jitter};
use crate::config::RetryConfig;
use crate::hedge_config::HedgeDelay;

/// One consistent copy of the per-call settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub max_elapsed: Option<Duration>,
    pub attempt_timeout: Option<Duration>,
    pub honor_retry_after: bool,
    pub max_retry_after: Duration,
    pub hedge: Hedge,
}

/// Hedging as a call reads it: `max_hedged` 0 is off; a percentile delay is read from the
/// handle's histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Hedge {
    pub max_hedged: u32,
    /// The fixed delay, or `None` for a percentile delay.
    pub fixed: Option<Duration>,
}

impl Hedge {
    pub fn from_config(c: &RetryConfig) -> Self {
        match &c.hedge {
            None => Hedge::default(),
            Some(h) => Hedge {
                max_hedged: h.max_hedged,
                fixed: match h.delay {
                    HedgeDelay::Fixed(d) => Some(d),
                    _ => None,
                },
            },
        }
    }
}

impl Settings {
    pub fn from_config(c: &RetryConfig) -> Self {
        Settings {
            max_attempts: c.max_attempts,
            backoff: c.backoff,
            max_elapsed: c.max_elapsed,
            attempt_timeout: c.attempt_timeout,
            honor_retry_after: c.honor_retry_after,
            max_retry_after: c.max_retry_after,
            hedge: Hedge::from_config(c),
        }
    }
}

const NONE: u64 = u64::MAX;

/// `d` in nanoseconds, never [`NONE`] (a validated config is far below it anyway).
fn nanos(d: Duration) -> u64 {
    tower_prism_core::internal::nanos(d).min(NONE - 1)
}

fn opt_nanos(d: Option<Duration>) -> u64 {
    d.map_or(NONE, nanos)
}

fn from_opt_nanos(n: u64) -> Option<Duration> {
    (n != NONE).then(|| Duration::from_nanos(n))
}

const KINDS: [BackoffKind; 4] = [
    BackoffKind::None,
    BackoffKind::Fixed,
    BackoffKind::Linear,
    BackoffKind::Exponential,
];
const JITTERS: [Jitter; 4] = [
    Jitter::None,
    Jitter::Full,
    Jitter::Equal,
    Jitter::Decorrelated,
];

/// [`Settings`] behind a sequence lock: `load` is a handful of relaxed loads, retried only
/// if a `store` ran at the same moment.
#[derive(Debug)]
pub(crate) struct SharedSettings {
    version: AtomicU64,
    max_attempts: AtomicU32,
    shape: AtomicU32, // kind << 8 | jitter
    base: AtomicU64,
    max: AtomicU64,
    max_elapsed: AtomicU64,
    attempt_timeout: AtomicU64,
    honor_retry_after: AtomicBool,
    max_retry_after: AtomicU64,
    /// `max_hedged` (0: off).
    max_hedged: AtomicU32,
    /// The fixed hedge delay ([`NONE`]: a percentile delay).
    hedge_delay: AtomicU64,
    writer: Mutex<()>,
}

impl SharedSettings {
    pub fn new(s: Settings) -> Self {
        let shared = SharedSettings {
            version: AtomicU64::new(0),
            max_attempts: AtomicU32::new(0),
            shape: AtomicU32::new(0),
            base: AtomicU64::new(0),
            max: AtomicU64::new(0),
            max_elapsed: AtomicU64::new(NONE),
            attempt_timeout: AtomicU64::new(NONE),
            honor_retry_after: AtomicBool::new(true),
            max_retry_after: AtomicU64::new(0),
            max_hedged: AtomicU32::new(0),
            hedge_delay: AtomicU64::new(NONE),
            writer: Mutex::new(()),
        };
        shared.store(s);
        shared
    }

    pub fn store(&self, s: Settings) {
        let _guard = lock(&self.writer);
        self.version.fetch_add(1, Ordering::Relaxed); // odd: a write is under way
        fence(Ordering::Release);
        let kind = KINDS.iter().position(|k| *k == s.backoff.kind).unwrap_or(3) as u32;
        let jitter = JITTERS
            .iter()
            .position(|j| *j == s.backoff.jitter)
            .unwrap_or(0) as u32;
        self.max_attempts.store(s.max_attempts, Ordering::Relaxed);
        self.shape.store(kind << 8 | jitter, Ordering::Relaxed);
        self.base.store(nanos(s.backoff.base), Ordering::Relaxed);
        self.max.store(nanos(s.backoff.max), Ordering::Relaxed);
        self.max_elapsed
            .store(opt_nanos(s.max_elapsed), Ordering::Relaxed);
        self.attempt_timeout
            .store(opt_nanos(s.attempt_timeout), Ordering::Relaxed);
        self.honor_retry_after
            .store(s.honor_retry_after, Ordering::Relaxed);
        self.max_retry_after
            .store(nanos(s.max_retry_after), Ordering::Relaxed);
        self.max_hedged.store(s.hedge.max_hedged, Ordering::Relaxed);
        self.hedge_delay
            .store(opt_nanos(s.hedge.fixed), Ordering::Relaxed);
        self.version.fetch_add(1, Ordering::Release); // even again
    }

    /// Attempts per call (alone: no need for a consistent snapshot).
    #[inline]
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.load(Ordering::Relaxed)
    }

    /// The per-attempt timeout.
    #[inline]
    pub fn attempt_timeout(&self) -> Option<Duration> {
        from_opt_nanos(self.attempt_timeout.load(Ordering::Relaxed))
    }

    /// Whether a `max_elapsed` deadline is set.
    #[inline]
    pub fn has_max_elapsed(&self) -> bool {
        self.max_elapsed.load(Ordering::Relaxed) != NONE
    }

    /// Hedging (alone, as `max_attempts`): read once per call.
    #[inline]
    pub fn hedge(&self) -> Hedge {
        let max_hedged = self.max_hedged.load(Ordering::Relaxed);
        if max_hedged == 0 {
            return Hedge::default();
        }
        Hedge {
            max_hedged,
            fixed: from_opt_nanos(self.hedge_delay.load(Ordering::Relaxed)),
        }
    }

    pub fn load(&self) -> Settings {
        loop {
            let before = self.version.load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let shape = self.shape.load(Ordering::Relaxed);
            let s = Settings {
                max_attempts: self.max_attempts.load(Ordering::Relaxed),
                backoff: Backoff {
                    kind: KINDS[(shape >> 8) as usize & 3],
                    base: Duration::from_nanos(self.base.load(Ordering::Relaxed)),
                    max: Duration::from_nanos(self.max.load(Ordering::Relaxed)),
                    jitter: JITTERS[shape as usize & 3],
                },
                max_elapsed: from_opt_nanos(self.max_elapsed.load(Ordering::Relaxed)),
                attempt_timeout: from_opt_nanos(self.attempt_timeout.load(Ordering::Relaxed)),
                honor_retry_after: self.honor_retry_after.load(Ordering::Relaxed),
                max_retry_after: Duration::from_nanos(self.max_retry_after.load(Ordering::Relaxed)),
                hedge: Hedge {
                    max_hedged: self.max_hedged.load(Ordering::Relaxed),
                    fixed: from_opt_nanos(self.hedge_delay.load(Ordering::Relaxed)),
                },
            };
            fence(Ordering::Acquire);
            if self.version.load(Ordering::Relaxed) == before {
                return s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips() {
        let mut config = RetryConfig {
            max_elapsed: Some(Duration::from_secs(2)),
            ..RetryConfig::default()
        };
        let shared = SharedSettings::new(Settings::from_config(&config));
        assert_eq!(shared.load(), Settings::from_config(&config));
        for kind in KINDS {
            for jitter in JITTERS {
                config.backoff.kind = kind;
                config.backoff.jitter = jitter;
                config.attempt_timeout = Some(Duration::from_millis(7));
                config.max_elapsed = None;
                config.max_attempts = 9;
                config.max_retry_after = Duration::from_secs(7);
                config.hedge = Some(crate::HedgeConfig::fixed(Duration::from_millis(9)));
                shared.store(Settings::from_config(&config));
                assert_eq!(shared.load(), Settings::from_config(&config));
            }
        }
    }

    #[test]
    fn readers_never_see_a_mix() {
        let a = Settings::from_config(&RetryConfig::default());
        let b = Settings::from_config(&RetryConfig {
            max_attempts: 7,
            max_elapsed: Some(Duration::from_secs(1)),
            backoff: Backoff::fixed(Duration::from_millis(3)),
            ..RetryConfig::default()
        });
        let shared = std::sync::Arc::new(SharedSettings::new(a));
        let writer = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    shared.store(if i % 2 == 0 { b } else { a });
                }
            })
        };
        for _ in 0..20_000 {
            let s = shared.load();
            assert!(s == a || s == b, "{s:?}");
        }
        writer.join().unwrap();
    }
}
