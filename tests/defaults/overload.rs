//! Twice the capacity offered (800 requests/s), no fault: the default concurrency limit
//! keeps the upstream's queue short, so p99 stays within 2x its unloaded value, and the
//! upstream stays busy.

use crate::support::{drive, prism, Upstream, CAPACITY, DEFAULTS};

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
