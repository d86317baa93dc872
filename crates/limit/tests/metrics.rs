//! Every metric the rate limiter promises is emitted, with the policy name and the reason
//! labels: a small in-test recorder captures the handles registered when the limiter is
//! built (the only time they are registered) and the values recorded through them later.

use std::time::Duration;

use tower::BoxError;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::metrics::ratelimit as names;
use tower_prism_limit::rate::{RateLimitConfig, RateLimitLayer};
use tower_prism_testkit::metrics::Capture;
use tower_prism_testkit::Echo;

/// (key, priority, weight)
type Req = (u32, u32, u32);

/// The unkeyed limiter's queue wait: longer than two queued tokens (200 ms at 10/s).
const MAX_WAIT: Duration = Duration::from_millis(350);

async fn send<S: Service<Req, Error = BoxError>>(svc: &mut S, req: Req) -> bool {
    svc.ready().await.unwrap().call(req).await.is_ok()
}

#[tokio::test(start_paused = true)]
async fn every_promised_metric_is_emitted() {
    let capture = Capture::default();
    let (unkeyed, keyed) = metrics::with_local_recorder(&capture, || {
        let unkeyed = RateLimitLayer::builder(
            RateLimitConfig::builder()
                .rate(10)
                .period(Duration::from_secs(1))
                .burst(2)
                .queue_size(2)
                .max_wait(MAX_WAIT)
                .build()
                .unwrap(),
        )
        .name("api")
        .build()
        .unwrap()
        .priority_fn(|r: &Req| r.1)
        .weight_fn(|r: &Req| r.2);
        let keyed = RateLimitLayer::builder(
            RateLimitConfig::builder()
                .rate(1)
                .period(Duration::from_secs(1))
                .burst(1)
                .build()
                .unwrap(),
        )
        .name("per_key")
        .build()
        .unwrap()
        .key_fn(|r: &Req| r.0);
        (unkeyed, keyed)
    });
    let l = |m: &str| format!("{m}{{name=api}}");
    let r = |reason: &str| format!("{}{{name=api,reason={reason}}}", names::REJECTED_TOTAL);
    assert_eq!(capture.gauge(&l(names::RATE_PER_SECOND)), 10.0);
    assert_eq!(capture.gauge(&l(names::TOKENS_AVAILABLE)), 2.0);

    let mut svc = unkeyed.layer(Echo);
    assert!(send(&mut svc, (0, 0, 1)).await);
    assert_eq!(capture.gauge(&l(names::TOKENS_AVAILABLE)), 1.0);
    assert!(send(&mut svc, (0, 0, 1)).await);
    assert_eq!(capture.counter(&l(names::ADMITTED_TOTAL)), 2);
    assert_eq!(capture.gauge(&l(names::TOKENS_AVAILABLE)), 0.0);
    assert!(!send(&mut svc, (0, 0, 3)).await, "weight above the burst");
    assert_eq!(capture.counter(&r("weight")), 1);

    // Two low-priority waiters (tokens at 100 and 200 ms); a higher one sheds one of them;
    // a fourth finds the queue full; a weight-2 request behind the queue would get its
    // tokens at 400 ms, past max_wait, and is refused at once as rate limited.
    let low_a = tokio::spawn(svc.ready().await.unwrap().call((0, 1, 1)));
    let low_b = tokio::spawn(svc.ready().await.unwrap().call((0, 1, 1)));
    assert_eq!(capture.gauge(&l(names::QUEUE_DEPTH)), 2.0);
    let high = tokio::spawn(svc.ready().await.unwrap().call((0, 5, 1)));
    assert_eq!(capture.counter(&r("shed")), 1);
    assert!(!send(&mut svc, (0, 1, 1)).await);
    assert_eq!(capture.counter(&r("queue_full")), 1);
    assert!(!send(&mut svc, (0, 0, 2)).await);
    assert_eq!(capture.counter(&r("rate")), 1);
    assert_eq!(capture.counter(&l(names::QUEUED_TOTAL)), 3);
    // The higher one gets the next token; then the rate drops to one a minute, so the low
    // one left waiting for its token times out at max_wait.
    assert!(high.await.unwrap().is_ok());
    let slower = {
        let mut c = RateLimitConfig::new(1, Duration::from_secs(60));
        c.queue_size = 2;
        c.max_wait = Some(MAX_WAIT);
        c.burst = Some(2);
        c
    };
    unkeyed.handle().reconfigure(&slower).unwrap();
    assert!(low_a.await.unwrap().is_err());
    assert!(low_b.await.unwrap().is_err());
    assert_eq!(capture.counter(&r("timeout")), 1);
    assert_eq!(capture.counter(&l(names::ADMITTED_TOTAL)), 3);
    assert_eq!(capture.gauge(&l(names::QUEUE_DEPTH)), 0.0);
    let waits = capture.samples(&l(names::QUEUE_WAIT_SECONDS));
    assert_eq!(waits.len(), 1);
    assert!((waits[0] - 0.1).abs() < 1e-9, "waited {waits:?}");
    // Keys tracked, without anyone having to ask for a snapshot.
    let mut svc = keyed.layer(Echo);
    for key in 0..3 {
        assert!(send(&mut svc, (key, 0, 1)).await);
    }
    assert!(!send(&mut svc, (0, 0, 1)).await);
    assert_eq!(
        capture.gauge(&format!("{}{{name=per_key}}", names::KEYS)),
        3.0
    );
    assert_eq!(
        capture.counter(&format!(
            "{}{{name=per_key,reason=rate}}",
            names::REJECTED_TOTAL
        )),
        1
    );
}
