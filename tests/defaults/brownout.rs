//! A brownout (25 % of calls fail at random, 320 requests/s offered): the defaults do
//! better than no protection, their retries recover most of the failed calls, and the
//! concurrency limit does not mistake the errors for congestion (no long queue builds).
//!
//! A failed call takes its service time, as a 500 after the work does. Retrying every
//! failure would need 320 / 0.75 = 427 attempts/s of an upstream that serves 400, so at
//! most 400 x 0.75 = 300 successes/s are possible: retries can recover at most
//! (300 - 240) / 80 = 75 % of the failed calls.

use crate::support::{drive, plain, prism, Fault, Upstream, DEFAULTS};

const RATE: f64 = 320.0;

fn brownout() -> Upstream {
    Upstream::new(Some((0, 20, Fault::FailRandom(0.25))))
}

#[tokio::test(start_paused = true)]
async fn in_a_brownout_retries_recover_most_failed_calls_without_a_queue() {
    let unprotected = drive(plain(brownout()), RATE, 20).await;
    let (client, _layer) = prism(DEFAULTS, brownout());
    let run = drive(client, RATE, 20).await;

    assert!(
        run.goodput() >= unprotected.goodput(),
        "goodput {:.1}/s with the defaults, {:.1}/s without protection",
        run.goodput(),
        unprotected.goodput()
    );
    // Most: well over half, of the 75 % the upstream's capacity allows.
    let recovered = 1.0 - run.failures() as f64 / unprotected.failures() as f64;
    assert!(
        recovered >= 0.6,
        "{} calls failed with the defaults, {} without protection: {:.0} % recovered \
         (at least 60 % of the 75 % possible)",
        run.failures(),
        unprotected.failures(),
        100.0 * recovered
    );
    // Three attempts of 20 ms and two default backoffs (at most 50 ms and 100 ms) take at
    // most 210 ms; a limit that follows the queue adds little to that. One that reads
    // the errors as congestion swings and lets a queue of hundreds build.
    let p99 = run.latency(0.99);
    assert!(
        p99 <= 0.3,
        "p99 {:.0} ms in the brownout (at most 300 ms)",
        p99 * 1000.0
    );
}
