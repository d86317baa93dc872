//! Twice the capacity offered (800 requests/s), no fault: the default concurrency limit
//! keeps the upstream's queue short, so p99 stays within 2x its unloaded value, and the
//! upstream stays busy.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{drive, prism, Upstream, CAPACITY, DEFAULTS, SLOTS};

#[tokio::test(start_paused = true)]
async fn under_twice_the_capacity_p99_stays_within_twice_the_unloaded_p99() {
    let (client, _layer) = prism(DEFAULTS, Upstream::new(None));
    let unloaded = drive(client, 100.0, 10).await.latency(0.99);

    let (client, _layer) = prism(DEFAULTS, Upstream::new(None));
    let run = drive(client, 2.0 * CAPACITY, 20).await;
    let p99 = run.latency(0.99);
    assert!(
        p99 <= 2.0 * unloaded,
        "p99 {:.0} ms at 2x capacity, {:.0} ms unloaded (at most 2x)",
        p99 * 1000.0,
        unloaded * 1000.0
    );
    assert!(
        run.goodput() >= 0.95 * CAPACITY,
        "goodput {:.1}/s, under 95 % of the capacity of {CAPACITY}/s",
        run.goodput()
    );
}

/// Under steady overload the limit, once it has learnt the upstream, never falls below the
/// upstream's 8 slots: its probe rounds (at 3/4 of the limit) leave no slot idle. A
/// regression test: a probe that found the latency lower went on to 6 slots, then 4.
#[tokio::test(start_paused = true)]
async fn probes_under_overload_leave_no_slot_idle() {
    let (client, layer) = prism(DEFAULTS, Upstream::new(None));
    let lowest = Arc::new(AtomicU32::new(u32::MAX));
    let sampler = {
        let (layer, lowest) = (layer.clone(), lowest.clone());
        tokio::spawn(async move {
            // after the first seconds, in which the limit learns the upstream
            tokio::time::sleep(Duration::from_secs(3)).await;
            loop {
                let limit = layer.snapshot().concurrency_limit.unwrap().limit;
                lowest.fetch_min(limit, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    drive(client, 2.0 * CAPACITY, 20).await;
    sampler.abort();
    let lowest = lowest.load(Ordering::Relaxed);
    assert!(
        lowest >= SLOTS as u32,
        "the limit fell to {lowest}, under the upstream's {SLOTS} slots"
    );
}
