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
pub use ready_call::{take_ready, ReadyCall};
pub use retry_after::{parse_retry_after, response_retry_after, MAX_RETRY_AFTER_LEN};

/// Runs `f` with the thread-local `cell` set to `value(what it held)`, and puts back what it
/// held afterwards, also when `f` panics: the ambient values the stages hand down the
/// stack while one of them calls the ones below (a request's deadline, its receipt time).
#[inline]
pub fn scoped<T: Copy + 'static, R>(
    cell: &'static std::thread::LocalKey<std::cell::Cell<T>>,
    value: impl FnOnce(T) -> T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<T: Copy + 'static> {
        cell: &'static std::thread::LocalKey<std::cell::Cell<T>>,
        previous: T,
    }
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            let _ = self.cell.try_with(|c| c.set(self.previous));
        }
    }
    // A thread being torn down has no cell: `f` runs without the value.
    let Ok(previous) = cell.try_with(|c| {
        let previous = c.get();
        c.set(value(previous));
        previous
    }) else {
        return f();
    };
    let _restore = Restore { cell, previous };
    f()
}

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

/// splitmix64's step between counter values (2^64 over the golden ratio, odd, so a
/// counter stepped by it visits every value): [`mix64`] of each is a well-spread random
/// number.
pub const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's finaliser: a fast, well-mixed 64-bit hash. Fed a counter stepped by
/// [`GAMMA`], it gives an independent-looking random number per value, so a shared
/// `AtomicU64` counter is a lock-free random source with one atomic add per draw.
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
