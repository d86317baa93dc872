use super::*;

fn budget(ratio: f64) -> RetryBudget {
    let config = BudgetConfig {
        ratio,
        success_ratio: ratio,
        min_per_second: 0,
        ..BudgetConfig::default()
    };
    // Build without the tokio clock: the loom model drives epochs by hand.
    let inner = Inner {
        slots: std::array::from_fn(|_| AtomicU64::new(0)),
        deposit: AtomicI64::new(0),
        success_deposit: AtomicI64::new(0),
        unhealthy_cost: AtomicI64::new(RETRY),
        reserve: AtomicI64::new(0),
        unhealthy: AtomicBool::new(false),
        enabled: AtomicBool::new(true),
        slot_nanos: Divisor::new(1_000_000_000),
        time: TimeSource::new(Clock::Tokio),
        health: None,
    };
    let b = RetryBudget {
        inner: Arc::new(inner),
    };
    b.reconfigure(&config);
    b
}

#[test]
fn loom_concurrent_withdrawals_never_overdraw() {
    loom::model(|| {
        let b = budget(1.0);
        b.deposit_at(0); // exactly one retry available
        let b2 = b.clone();
        let t = loom::thread::spawn(move || b2.withdraw_at(0));
        let mine = b.withdraw_at(0);
        let theirs = t.join().unwrap();
        assert!(mine ^ theirs, "exactly one of two withdrawals succeeds");
        assert!(b.available_at(0).abs() < 1e-9);
    });
}

#[test]
fn loom_deposit_and_withdraw_race_keeps_the_sum() {
    loom::model(|| {
        let b = budget(0.5);
        b.deposit_at(1);
        b.deposit_at(1); // one retry
        let b2 = b.clone();
        let t = loom::thread::spawn(move || {
            b2.deposit_at(1);
            b2.deposit_at(1);
        });
        let took = b.withdraw_at(1);
        t.join().unwrap();
        assert!(took, "one retry was there before the race");
        assert!((b.available_at(1) - 1.0).abs() < 1e-9);
    });
}

#[test]
fn loom_a_refund_racing_a_withdrawal_loses_and_creates_nothing() {
    loom::model(|| {
        let b = budget(1.0);
        b.deposit_at(0); // exactly one retry available
        let b2 = b.clone();
        // one call takes the retry and gives it back (dropped before sending it)
        let t = loom::thread::spawn(move || {
            if let Some(cost) = b2.take_at(0) {
                b2.refund_at(0, cost);
            }
        });
        let took = b.withdraw_at(0);
        t.join().unwrap();
        let left = b.available_at(0);
        assert!(
            (left + f64::from(u8::from(took)) - 1.0).abs() < 1e-9,
            "one retry in all: {left} left, taken: {took}"
        );
    });
}

#[test]
fn loom_new_slot_rotation_with_withdrawal() {
    loom::model(|| {
        let b = budget(1.0);
        b.deposit_at(0);
        let b2 = b.clone();
        // one thread moves to the slot 10 epochs later (reusing slot 0), the other withdraws
        let t = loom::thread::spawn(move || b2.deposit_at(10));
        let took = b.withdraw_at(0);
        t.join().unwrap();
        let left = b.available_at(10);
        assert!(
            (left - 1.0).abs() < 1e-9,
            "the new slot holds only its deposit: {left} {took}"
        );
    });
}
