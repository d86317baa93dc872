//! A full outage (every call refused from 10 s to 20 s, 320 requests/s offered): the
//! defaults lose little more than no protection does (the calls of the breaker's last open
//! wait), come back within 2 s of the upstream, and do not hammer it while it is down.

use crate::support::{drive, plain, prism, Fault, Upstream, DEFAULTS};

const RATE: f64 = 320.0;

fn outage() -> Upstream {
    Upstream::new(Some((10, 20, Fault::Down)))
}

#[tokio::test(start_paused = true)]
async fn the_defaults_lose_little_and_recover_within_two_seconds_of_an_outage() {
    let unprotected = drive(plain(outage()), RATE, 30).await;
    let upstream = outage();
    let (client, _layer) = prism(DEFAULTS, upstream.clone());
    let run = drive(client, RATE, 30).await;

    // No protection loses nothing at the outage's end: it sends every call, so the first
    // one after the end succeeds. A breaker stops sending while the upstream is down and
    // finds out it is back with its next probe: the default open wait grows to 2 s, so up
    // to 2 s of the offered load (7 % of this run's goodput), about half that on average,
    // is the price of not hammering a dead upstream.
    assert!(
        run.goodput() >= 0.95 * unprotected.goodput(),
        "goodput {:.1}/s with the defaults, {:.1}/s without protection (at least 95 %)",
        run.goodput(),
        unprotected.goodput()
    );
    let recovery = run.recovery_after(20.0);
    assert!(
        recovery.is_some_and(|t| t <= 2.0),
        "goodput back to 90 % of offered {recovery:?} s after the outage (at most 2 s)"
    );
    let amplification =
        upstream.attempts_between(10.0, 20.0) as f64 / run.sent_between(10.0, 20.0) as f64;
    assert!(
        amplification <= 1.1,
        "{amplification:.2} attempts per request reached the dead upstream (at most 1.1)"
    );
}
