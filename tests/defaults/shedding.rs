//! Polite shedding (every call answered 503 + `Retry-After: 2` from 5 s to 15 s, 320
//! requests/s offered): the breaker opens on the 503s and takes the upstream's word for
//! its open wait (about 2 s, not its own default), so goodput returns about 2 s after the
//! shedding ends at the latest.
//!
//! The stack knows the caller's 1 s deadline (the retry's `max_elapsed`): a retry that
//! would sleep out a 2 s hint past it passes the 503 back at once, so the breaker sees it.
//! Without a known deadline the retries sleep past the caller's deadline and the breaker
//! sees cancelled calls only (the lab's `polite-shedding` shows that case).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower_prism::{Http, ReliabilityLayer};

use crate::support::{drive, prism, Fault, Upstream, DEFAULTS_WITH_DEADLINE};

const RATE: f64 = 320.0;

/// The longest open wait the breaker reported (time left before probing), sampled every
/// 10 ms until `stop`; `None` if it never opened.
async fn longest_open_wait(
    layer: ReliabilityLayer<Http>,
    stop: Arc<AtomicBool>,
) -> Option<Duration> {
    let mut longest = None;
    while !stop.load(Ordering::Relaxed) {
        let snapshot = layer.snapshot();
        if snapshot.circuit_open {
            let wait = snapshot
                .circuit_breaker
                .and_then(|b| b.retry_after)
                .unwrap_or_default();
            longest = Some(longest.map_or(wait, |l: Duration| l.max(wait)));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    longest
}

#[tokio::test(start_paused = true)]
async fn the_breaker_waits_as_long_as_retry_after_says_and_goodput_returns_within_two_seconds() {
    let upstream = Upstream::new(Some((5, 15, Fault::Shed(2))));
    let (client, layer) = prism(DEFAULTS_WITH_DEADLINE, upstream);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(longest_open_wait(layer, stop.clone()));
    let run = drive(client, RATE, 30).await;
    stop.store(true, Ordering::Relaxed);
    let longest = sampler.await.unwrap();

    let Some(longest) = longest else {
        panic!("the breaker never opened on ten seconds of 503s");
    };
    assert!(
        longest <= Duration::from_secs(2),
        "the breaker meant to stay open {longest:?}; the upstream said 2 s"
    );
    let recovery = run.recovery_after(15.0);
    assert!(
        recovery.is_some_and(|t| t <= 2.5),
        "goodput back to 90 % of offered {recovery:?} s after the shedding ended (about 2 s)"
    );
}
