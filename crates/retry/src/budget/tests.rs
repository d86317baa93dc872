use super::*;
use std::time::Duration;
use tower_prism_core::Outcome;

fn config(ratio: f64, min_per_second: u32) -> BudgetConfig {
    BudgetConfig {
        ratio,
        min_per_second,
        ..BudgetConfig::default()
    }
}

#[test]
fn packing_round_trips_negative_balances() {
    for (e, b) in [
        (0, 0),
        (5, -7),
        (EPOCH_MASK, BALANCE_MAX),
        (3, -BALANCE_MAX),
    ] {
        let raw = pack(e, b);
        assert_eq!((epoch_of(raw), balance_of(raw)), (e, b));
    }
}

#[tokio::test(start_paused = true)]
async fn ratio_limits_retries_and_deposits_expire() {
    let b = RetryBudget::new(&config(0.2, 0));
    for _ in 0..10 {
        b.deposit_at(0);
    }
    assert!((b.available_at(0) - 2.0).abs() < 1e-9);
    assert!(b.withdraw_at(0));
    assert!(b.withdraw_at(3)); // a later slot draws on the same window
    assert!(!b.withdraw_at(3), "two retries for ten first attempts");
    // recovery: slot 0 leaves the window at epoch 10, with its deposits and its debt
    assert!(!b.withdraw_at(9));
    for _ in 0..5 {
        b.deposit_at(10);
    }
    // epoch 10 reuses slot 0; slot 3 (one withdrawal) is still live
    assert!((b.available_at(10) - 0.0).abs() < 1e-9);
    b.deposit_at(11);
    b.deposit_at(11);
    b.deposit_at(11);
    b.deposit_at(11);
    b.deposit_at(11);
    assert!(b.withdraw_at(11));
    assert!(!b.withdraw_at(11));
    // once slot 3's debt expires (epoch 13), fresh deposits are all there is
    assert!((b.available_at(14) - 1.0).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn reserve_allows_a_floor_of_retries() {
    let b = RetryBudget::new(&config(0.2, 1)); // 1/s over 10s = 10 retries
    let granted = (0..20).filter(|_| b.withdraw_at(0)).count();
    assert_eq!(granted, 10);
    // the debt expires with the window
    assert_eq!((0..20).filter(|_| b.withdraw_at(10)).count(), 10);
}

#[tokio::test(start_paused = true)]
async fn clock_driven_recovery() {
    let b = RetryBudget::new(&config(1.0, 0));
    b.deposit();
    assert!(b.withdraw());
    assert!(!b.withdraw());
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(!b.withdraw(), "no traffic, no floor: still empty");
    b.deposit();
    assert!(b.withdraw(), "recovered once new first attempts arrive");
    let disabled = BudgetConfig {
        enabled: false,
        ..config(1.0, 0)
    };
    b.reconfigure(&disabled);
    assert!((0..100).all(|_| b.withdraw()));
}

#[tokio::test(start_paused = true)]
async fn health_tightens_the_ratio() {
    let signal = HealthSignal::new();
    let cfg = BudgetConfig {
        unhealthy_ratio: Some(0.05),
        ..config(0.2, 0)
    };
    let b = RetryBudget::with_health(&cfg, &signal);
    for _ in 0..10 {
        signal.record(Outcome::RETRYABLE, Duration::ZERO);
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..20 {
        b.deposit(); // four retries' worth at the healthy ratio
    }
    assert!(b.is_unhealthy());
    assert!(b.withdraw(), "a retry costs four times as much: one fits");
    assert!(!b.withdraw());
    // healthy again: the next slot's first deposit restores the ratio
    for _ in 0..10 {
        signal.record(Outcome::Success, Duration::ZERO);
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..5 {
        b.deposit(); // one retry's worth at the healthy ratio
    }
    assert!(!b.is_unhealthy());
    assert!(b.withdraw());
    assert!(!b.withdraw());
}

#[tokio::test(start_paused = true)]
async fn a_late_deposit_does_not_wipe_a_newer_slot() {
    let b = RetryBudget::new(&config(1.0, 0));
    b.deposit_at(12); // slot 2, epoch 12
    b.deposit_at(2); // a caller whose clock reading is a window old
    assert!((b.available_at(12) - 2.0).abs() < 1e-9);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// A withdrawal succeeds exactly when the live window (deposits minus earlier
    /// withdrawals, plus the reserve) holds a whole retry, so the budget never overdraws.
    #[test]
    fn withdrawals_never_overdraw_the_window(
        ops in proptest::collection::vec((proptest::bool::ANY, 0u64..3), 1..300),
        ratio in 0.05f64..2.0,
        floor in 0u32..2,
    ) {
        let b = RetryBudget::new(&config(ratio, floor));
        let deposit = (ratio * RETRY as f64).round().max(1.0) as i64;
        let reserve = i64::from(floor) * 10 * RETRY;
        let (mut deposits, mut withdrawals) = (Vec::new(), Vec::new());
        let mut epoch = 0u64;
        for (is_deposit, step) in ops {
            epoch += step;
            let live = |e: &&u64| **e + SLOTS as u64 > epoch;
            if is_deposit {
                b.deposit_at(epoch);
                deposits.push(epoch);
                continue;
            }
            let have = reserve
                + deposits.iter().filter(live).count() as i64 * deposit
                - withdrawals.iter().filter(live).count() as i64 * RETRY;
            let granted = b.withdraw_at(epoch);
            proptest::prop_assert_eq!(granted, have >= RETRY, "epoch {} have {}", epoch, have);
            if granted {
                withdrawals.push(epoch);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_slot_left_alone_for_2_pow_20_slots_stays_expired() {
    // A 20-bit epoch wrapped here: slots from 2^20 slots ago (12 days at the default
    // window, 29 hours at a 1 s one) came back to life, deposits and debts alike.
    let b = RetryBudget::new(&config(1.0, 0));
    for _ in 0..5 {
        b.deposit_at(3);
    }
    assert!(b.withdraw_at(4));
    let later = 3 + (1 << 20);
    assert!(b.available_at(later).abs() < 1e-9);
    assert!(!b.withdraw_at(later), "old deposits are gone");
    b.deposit_at(later);
    assert!(
        (b.available_at(later) - 1.0).abs() < 1e-9,
        "and old debts too"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refund_gives_back_what_was_taken_while_the_slot_lives() {
    let b = RetryBudget::new(&config(1.0, 0));
    b.deposit_at(0);
    b.deposit_at(0);
    let cost = b.take_at(2).unwrap();
    assert!((b.available_at(2) - 1.0).abs() < 1e-9);
    b.refund_at(2, cost);
    assert!((b.available_at(2) - 2.0).abs() < 1e-9);
    // a refund after its slot left the window changes nothing
    let cost = b.take_at(5).unwrap();
    b.deposit_at(15);
    b.refund_at(5, cost);
    assert!((b.available_at(15) - 1.0).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn a_slot_at_its_debt_floor_refuses() {
    let b = RetryBudget::new(&config(1.0, 0));
    // a full previous slot, and a current slot whose debt is at the floor
    b.inner.slots[0].store(pack(0, BALANCE_MAX), Ordering::Relaxed);
    b.inner.slots[1].store(pack(1, -BALANCE_MAX + 1), Ordering::Relaxed);
    assert!(!b.withdraw_at(1), "the debt could not be recorded");
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_budget() {
    let a = RetryBudget::new(&config(1.0, 0));
    let c = a.clone();
    a.deposit();
    assert!(a.same_as(&c));
    assert!(c.withdraw());
    assert!(!a.withdraw());
}

#[tokio::test(start_paused = true)]
async fn successes_earn_and_first_attempts_earn_only_with_a_ratio() {
    let by_default = RetryBudget::new(&config(0.0, 0));
    for _ in 0..10 {
        by_default.deposit_at(0); // first attempts earn nothing
    }
    assert_eq!(by_default.available_at(0), 0.0);
    for _ in 0..4 {
        by_default.deposit_success_at(0);
    }
    assert!((by_default.available_at(0) - 2.0).abs() < 1e-9);
    // both together: 0.2 per first attempt plus 0.5 per success
    let both = RetryBudget::new(&config(0.2, 0));
    for _ in 0..10 {
        both.deposit_at(3);
    }
    for _ in 0..2 {
        both.deposit_success_at(4);
    }
    assert!((both.available_at(5) - 3.0).abs() < 1e-9);
    // success earning turned off
    let off = RetryBudget::new(&BudgetConfig {
        success_ratio: 0.0,
        ..config(0.2, 0)
    });
    off.deposit_success_at(0);
    assert_eq!(off.available_at(0), 0.0);
}

#[tokio::test(start_paused = true)]
async fn health_tightens_a_budget_that_earns_on_success_and_is_read_without_deposits() {
    let signal = HealthSignal::new();
    let cfg = BudgetConfig {
        unhealthy_ratio: Some(0.125), // a quarter of success_ratio: a retry costs four
        ..config(0.0, 1)
    };
    let b = RetryBudget::with_health(&cfg, &signal);
    for _ in 0..10 {
        signal.record(Outcome::RETRYABLE, Duration::ZERO);
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    // no success, no deposit: the withdrawal itself re-reads health
    assert!(b.withdraw());
    assert!(b.is_unhealthy());
    assert!(b.withdraw());
    assert!(
        !b.withdraw(),
        "a floor of 10 retries at four each: two and a half"
    );
}
