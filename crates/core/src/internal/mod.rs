//! Glue the tower-prism crates share. **Not part of the public API**: it may change in any
//! release. Users have no reason to reach for it; it is public only so the component crates
//! can use one copy instead of four.

pub mod attempt;
mod divisor;
pub mod reading;
mod ready_call;
pub mod received;
pub mod refusal;
mod retry_after;
pub mod route;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use divisor::Divisor;
pub use ready_call::ReadyCall;
pub use retry_after::{parse_retry_after, response_retry_after, MAX_RETRY_AFTER_LEN};

/// Locks `mutex`, ignoring poisoning.
///
/// Every mutex in tower-prism guards state that stays consistent between statements (a
/// panic in a user's callback cannot leave it half-written), so a panic elsewhere must not
/// turn every later call into a panic too.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `duration` in nanoseconds, saturating at `u64::MAX` (about 584 years).
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// splitmix64's finaliser: a fast, well-mixed 64-bit hash. Fed a counter, it gives an
/// independent-looking random number per value, so a shared `AtomicU64` counter is a
/// lock-free random source with one atomic add per draw.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_saturates() {
        assert_eq!(nanos(Duration::from_millis(3)), 3_000_000);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }

    #[test]
    fn mix64_spreads_neighbouring_inputs() {
        let a = mix64(1);
        let b = mix64(2);
        assert_ne!(a, b);
        // neighbours differ in about half their bits, not in one
        assert!((a ^ b).count_ones() > 16, "{a:x} {b:x}");
    }

    #[test]
    fn lock_survives_a_poisoned_mutex() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
