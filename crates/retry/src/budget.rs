//! [`RetryBudget`]: retries may not exceed what recent calls earned plus a floor.
//!
//! In the manner of Finagle's `RetryBudget` and tower's `TpsBudget`, with credit earned on
//! success as well: every successful attempt deposits `success_ratio` of a retry, every
//! first attempt `ratio` of one, every retry withdraws one, and deposits expire after the
//! window. A constant reserve of `min_per_second * window` retries lets a quiet service
//! retry at all. With the default (earning on success only), an upstream that fails every
//! call earns nothing: its retries fall to the reserve.
//!
//! The window is [`SLOTS`] time slots, each one `AtomicU64` packing the slot's epoch (32
//! bits) and its balance (32 bits, signed, in 1/10 000 of a retry: at most about 214 000
//! retries per slot, beyond which deposits saturate and withdrawals are refused). A slot's
//! epoch wraps after 2^32 slots, 13.6 years at the shortest (1 s) window, so a slot left
//! untouched while time jumps ahead by days is never mistaken for a live one. Depositing and
//! withdrawing are a CAS on the current slot; a withdrawal sums the live slots and CASes the
//! current one, so concurrent withdrawals within one slot never overdraw (they serialise
//! on that slot). No lock, no allocation. The algorithm takes the epoch as an argument, so
//! tests and the loom model drive time by hand.

use std::sync::Mutex;

use tokio::time::Instant;
use tower_prism_core::internal::{nanos, Divisor};
use tower_prism_core::sync::{Arc, AtomicBool, AtomicI64, AtomicU64, Ordering};
use tower_prism_core::{Clock, HealthReader, HealthSignal, TimeSource};

use crate::config::BudgetConfig;

/// Time slots in one budget window.
pub(crate) const SLOTS: usize = 10;
/// One retry, in the budget's fixed-point units.
const RETRY: i64 = 10_000;
const EPOCH_BITS: u32 = 32;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
const BALANCE_BITS: u32 = 64 - EPOCH_BITS;
const BALANCE_MASK: u64 = (1 << BALANCE_BITS) - 1;
const BALANCE_MAX: i64 = (1 << (BALANCE_BITS - 1)) - 1;

#[inline]
fn pack(epoch: u64, balance: i64) -> u64 {
    let balance = balance.clamp(-BALANCE_MAX, BALANCE_MAX);
    ((epoch & EPOCH_MASK) << BALANCE_BITS) | (balance as u64 & BALANCE_MASK)
}

#[inline]
fn epoch_of(raw: u64) -> u64 {
    raw >> BALANCE_BITS
}

#[inline]
fn balance_of(raw: u64) -> i64 {
    ((raw << EPOCH_BITS) as i64) >> EPOCH_BITS
}

/// Whether a slot's (32-bit) epoch is later than `epoch`.
#[inline]
fn is_newer(slot_epoch: u64, epoch: u64) -> bool {
    let ahead = slot_epoch.wrapping_sub(epoch & EPOCH_MASK) & EPOCH_MASK;
    ahead != 0 && ahead < (1 << (EPOCH_BITS - 1))
}

/// Slots older than the window (or from a later epoch) count as empty.
#[inline]
fn live_balance(raw: u64, epoch: u64) -> i64 {
    let age = (epoch & EPOCH_MASK).wrapping_sub(epoch_of(raw)) & EPOCH_MASK;
    if (age as usize) < SLOTS {
        balance_of(raw)
    } else {
        0
    }
}

struct Inner {
    slots: [AtomicU64; SLOTS],
    /// Units deposited per first attempt (`ratio * RETRY`).
    deposit: AtomicI64,
    /// Units deposited per successful attempt (`success_ratio * RETRY`).
    success_deposit: AtomicI64,
    /// Units a retry costs while unhealthy (`RETRY * reference ratio / unhealthy_ratio`).
    unhealthy_cost: AtomicI64,
    /// Units always available (`min_per_second * window * RETRY`).
    reserve: AtomicI64,
    unhealthy: AtomicBool,
    enabled: AtomicBool,
    /// The slot width in nanoseconds (a clock reading is divided by it on every call).
    slot_nanos: Divisor,
    /// Where epochs are read ([`Clock::Auto`]: the CPU's counter, or tokio's clock when
    /// it is paused at the first reading).
    time: TimeSource,
    health: Option<Health>,
}

struct Health {
    reader: Mutex<HealthReader>,
    failure_rate: AtomicU64, // f64 bits
    /// The last epoch health was re-read at.
    epoch: AtomicU64,
}

/// A retry budget shared by every clone (every clone of a retry layer draws on one).
///
/// ```
/// use tower_prism_retry::{BudgetConfig, RetryBudget};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = BudgetConfig::builder().ratio(0.5).min_per_second(0).build().unwrap();
/// let budget = RetryBudget::new(&config);
/// for _ in 0..4 {
///     budget.deposit(); // four first attempts earn two retries
/// }
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("available", &self.available())
            .field("unhealthy", &self.is_unhealthy())
            .finish()
    }
}

impl RetryBudget {
    /// A budget from a validated config. Its clock-driven methods
    /// ([`deposit`](Self::deposit) ...) read the CPU's counter, or tokio's clock if it is
    /// paused when the budget first reads the time (see
    /// [`Clock::Auto`](tower_prism_core::Clock::Auto)).
    pub fn new(config: &BudgetConfig) -> Self {
        Self::build(config, None)
    }

    /// A budget whose ratio drops to `unhealthy_ratio` while `health` reports the circuit
    /// open or a failure rate of at least `unhealthy_failure_rate`. Health is re-read once
    /// per slot (a tenth of the window), off the hot path.
    pub fn with_health(config: &BudgetConfig, health: &HealthSignal) -> Self {
        Self::build(config, Some(health))
    }

    fn build(config: &BudgetConfig, health: Option<&HealthSignal>) -> Self {
        let slot_nanos = Divisor::new(nanos(config.window) / SLOTS as u64);
        let inner = Inner {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            deposit: AtomicI64::new(0),
            success_deposit: AtomicI64::new(0),
            unhealthy_cost: AtomicI64::new(RETRY),
            reserve: AtomicI64::new(0),
            unhealthy: AtomicBool::new(false),
            enabled: AtomicBool::new(true),
            slot_nanos,
            time: TimeSource::new(Clock::Auto),
            health: health.map(|h| Health {
                reader: Mutex::new(h.subscribe_outcomes()),
                failure_rate: AtomicU64::new(config.unhealthy_failure_rate.to_bits()),
                epoch: AtomicU64::new(u64::MAX),
            }),
        };
        let budget = RetryBudget {
            inner: Arc::new(inner),
        };
        budget.reconfigure(config);
        budget
    }

    /// Applies new ratios, floor and `enabled`. The window length stays as built (its
    /// slots' width is read on every call): [`RetryHandle::check`](crate::RetryHandle::check)
    /// refuses a config with another.
    pub fn reconfigure(&self, config: &BudgetConfig) {
        let i = &self.inner;
        let units = |ratio: f64| {
            if ratio > 0.0 {
                (ratio * RETRY as f64).round().max(1.0) as i64
            } else {
                0
            }
        };
        i.deposit.store(units(config.ratio), Ordering::Relaxed);
        i.success_deposit
            .store(units(config.success_ratio), Ordering::Relaxed);
        let cost = match config.unhealthy_ratio {
            Some(r) if r > 0.0 => ((RETRY as f64) * config.reference_ratio().1 / r).round() as i64,
            _ => RETRY,
        };
        i.unhealthy_cost.store(cost.max(RETRY), Ordering::Relaxed);
        let window_secs = (i.slot_nanos.get() * SLOTS as u64) as f64 / 1e9;
        let reserve = f64::from(config.min_per_second) * window_secs * RETRY as f64;
        i.reserve
            .store(reserve.min(BALANCE_MAX as f64) as i64, Ordering::Relaxed);
        if let Some(h) = &i.health {
            h.failure_rate
                .store(config.unhealthy_failure_rate.to_bits(), Ordering::Relaxed);
        }
        i.enabled.store(config.enabled, Ordering::Relaxed);
    }

    /// Whether the budget limits retries (`enabled` in the config).
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    /// The current epoch (slot number).
    #[inline]
    fn epoch(&self) -> u64 {
        self.inner.slot_nanos.divide(self.inner.time.now())
    }

    /// The epoch at a tokio reading the caller has (read anew on the counter).
    #[inline]
    fn epoch_of_instant(&self, now: Instant) -> u64 {
        self.inner.slot_nanos.divide(self.inner.time.at(now))
    }

    /// Records a first attempt: earns `ratio` of a retry for one window.
    pub fn deposit(&self) {
        let amount = self.inner.deposit.load(Ordering::Relaxed);
        self.deposit_amount(amount, self.epoch());
    }

    /// Records a successful attempt: earns `success_ratio` of a retry for one window.
    ///
    /// ```
    /// use tower_prism_retry::{BudgetConfig, RetryBudget};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let config = BudgetConfig::builder().min_per_second(0).build().unwrap();
    /// let budget = RetryBudget::new(&config);
    /// budget.deposit(); // first attempts earn nothing by default
    /// assert!(!budget.withdraw());
    /// budget.deposit_success();
    /// budget.deposit_success(); // two successes earn one retry
    /// assert!(budget.withdraw());
    /// # }
    /// ```
    pub fn deposit_success(&self) {
        let amount = self.inner.success_deposit.load(Ordering::Relaxed);
        self.deposit_amount(amount, self.epoch());
    }

    /// Whether first attempts earn anything (a clock reading at the start of a call is
    /// needed only then).
    #[inline]
    pub(crate) fn earns_per_attempt(&self) -> bool {
        self.is_enabled() && self.inner.deposit.load(Ordering::Relaxed) > 0
    }

    /// Whether successful attempts earn anything.
    #[inline]
    pub(crate) fn earns_per_success(&self) -> bool {
        self.is_enabled() && self.inner.success_deposit.load(Ordering::Relaxed) > 0
    }

    /// [`deposit`](Self::deposit) with a clock reading the caller already has.
    #[inline]
    pub(crate) fn deposit_at_instant(&self, now: Instant) {
        let amount = self.inner.deposit.load(Ordering::Relaxed);
        self.deposit_amount(amount, self.epoch_of_instant(now));
    }

    /// [`deposit_success`](Self::deposit_success) with a clock reading the caller already
    /// has.
    #[inline]
    pub(crate) fn deposit_success_at_instant(&self, now: Instant) {
        let amount = self.inner.success_deposit.load(Ordering::Relaxed);
        self.deposit_amount(amount, self.epoch_of_instant(now));
    }

    #[inline]
    fn deposit_amount(&self, amount: i64, epoch: u64) {
        if amount > 0 && self.add_at(epoch, amount) {
            self.refresh_health_at(epoch);
        }
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when it is empty.
    /// Always `true` when the budget is disabled.
    pub fn withdraw(&self) -> bool {
        !self.is_enabled() || self.withdraw_at(self.epoch())
    }

    /// Retries available now (fractional).
    pub fn available(&self) -> f64 {
        self.available_at(self.epoch())
    }

    /// Whether the tightened (unhealthy) ratio is in force.
    pub fn is_unhealthy(&self) -> bool {
        self.inner.unhealthy.load(Ordering::Relaxed)
    }

    /// [`deposit`](Self::deposit) at a given epoch. Returns `true` if this call started a
    /// new slot.
    #[cfg(test)]
    pub(crate) fn deposit_at(&self, epoch: u64) -> bool {
        self.add_at(epoch, self.inner.deposit.load(Ordering::Relaxed))
    }

    /// [`deposit_success`](Self::deposit_success) at a given epoch. Returns `true` if this
    /// call started a new slot.
    #[cfg(test)]
    pub(crate) fn deposit_success_at(&self, epoch: u64) -> bool {
        self.add_at(epoch, self.inner.success_deposit.load(Ordering::Relaxed))
    }

    /// Adds `amount` units at `epoch`. Returns `true` if this call started a new slot.
    #[inline]
    fn add_at(&self, epoch: u64, amount: i64) -> bool {
        let slot = &self.inner.slots[(epoch % SLOTS as u64) as usize];
        let mut raw = slot.load(Ordering::Acquire);
        loop {
            let current = epoch_of(raw) == epoch & EPOCH_MASK;
            // A caller that read the clock a whole window ago must not wipe a newer slot:
            // its deposit joins that slot instead.
            let newer = is_newer(epoch_of(raw), epoch);
            let balance = if current || newer { balance_of(raw) } else { 0 };
            let slot_epoch = if newer { epoch_of(raw) } else { epoch };
            let new = pack(slot_epoch, balance.saturating_add(amount));
            match slot.compare_exchange_weak(raw, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return !current && !newer,
                Err(actual) => raw = actual,
            }
        }
    }

    /// [`withdraw`](Self::withdraw) at a given epoch (ignores `enabled`).
    pub(crate) fn withdraw_at(&self, epoch: u64) -> bool {
        self.take_at(epoch).is_some()
    }

    /// Takes one retry at `epoch`: the units taken (to give back with
    /// [`refund_at`](Self::refund_at) if the retry is never sent), or `None` when empty.
    pub(crate) fn take_at(&self, epoch: u64) -> Option<i64> {
        let i = &self.inner;
        // Health is re-read once per slot; a budget that earns only on success sees no
        // deposit while everything fails, so withdrawals re-read it too.
        self.refresh_health_at(epoch);
        let cost = if i.unhealthy.load(Ordering::Relaxed) {
            i.unhealthy_cost.load(Ordering::Relaxed)
        } else {
            RETRY
        };
        let index = (epoch % SLOTS as u64) as usize;
        let slot = &i.slots[index];
        loop {
            let raw = slot.load(Ordering::Acquire);
            let own = if epoch_of(raw) == epoch & EPOCH_MASK {
                balance_of(raw)
            } else {
                0
            };
            let others: i64 = (0..SLOTS)
                .filter(|&n| n != index)
                .map(|n| live_balance(i.slots[n].load(Ordering::Acquire), epoch))
                .sum();
            let total = i.reserve.load(Ordering::Relaxed) + own + others;
            // A slot whose debt is at its floor cannot record another withdrawal: refuse
            // rather than grant a retry that costs nothing.
            if total < cost || own - cost < -BALANCE_MAX {
                return None;
            }
            let new = pack(epoch, own - cost);
            if slot
                .compare_exchange(raw, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some(cost);
            }
        }
    }

    /// Gives back `cost` units taken at `epoch` for a retry that was never sent (its call
    /// was dropped or failed before the retry went out). Nothing happens once that slot has
    /// left the window: its debt has expired with it.
    pub(crate) fn refund_at(&self, epoch: u64, cost: i64) {
        let slot = &self.inner.slots[(epoch % SLOTS as u64) as usize];
        let mut raw = slot.load(Ordering::Acquire);
        while epoch_of(raw) == epoch & EPOCH_MASK {
            let new = pack(epoch, balance_of(raw).saturating_add(cost));
            match slot.compare_exchange_weak(raw, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => raw = actual,
            }
        }
    }

    /// The epoch of a clock reading, for [`take_at`](Self::take_at) and
    /// [`refund_at`](Self::refund_at).
    #[inline]
    pub(crate) fn epoch_at(&self, now: Instant) -> u64 {
        self.epoch_of_instant(now)
    }

    /// [`available`](Self::available) at a given epoch.
    pub(crate) fn available_at(&self, epoch: u64) -> f64 {
        let i = &self.inner;
        let sum: i64 = i
            .slots
            .iter()
            .map(|s| live_balance(s.load(Ordering::Acquire), epoch))
            .sum();
        (sum + i.reserve.load(Ordering::Relaxed)) as f64 / RETRY as f64
    }

    /// [`refresh_health`](Self::refresh_health) unless it already ran at `epoch`.
    #[inline]
    fn refresh_health_at(&self, epoch: u64) {
        if let Some(health) = &self.inner.health {
            if health.epoch.load(Ordering::Relaxed) != epoch
                && health.epoch.swap(epoch, Ordering::Relaxed) != epoch
            {
                self.refresh_health();
            }
        }
    }

    /// Re-reads downstream health (never blocks). Each read sees the outcomes since the
    /// last one: call it once per slot, through [`refresh_health_at`](Self::refresh_health_at).
    fn refresh_health(&self) {
        let Some(health) = &self.inner.health else {
            return;
        };
        let Ok(mut reader) = health.reader.try_lock() else {
            return;
        };
        let stats = reader.read();
        let threshold = f64::from_bits(health.failure_rate.load(Ordering::Relaxed));
        let unhealthy =
            stats.circuit_open || stats.failure_rate().is_some_and(|rate| rate >= threshold);
        let was = self.inner.unhealthy.swap(unhealthy, Ordering::Relaxed);
        if was != unhealthy {
            tracing::info!(
                unhealthy,
                "retry budget ratio {}",
                if unhealthy { "tightened" } else { "restored" }
            );
        }
    }

    /// Whether two handles share one budget.
    #[cfg(test)]
    pub(crate) fn same_as(&self, other: &RetryBudget) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(loom, test))]
mod loom_tests;
