//! A rate limit in front of a concurrency limit (the facade's order): with `refund_shed`, a
//! request the concurrency limit sheds at once gives its rate tokens back, so the rate
//! counts the requests sent on, not the ones refused on the way; without it (the default,
//! as in governor) an admission spends its tokens whatever happens below.

mod common;

use std::time::Duration;

use common::concurrency::{concurrency_error, fixed, Gate};
use tokio::sync::oneshot;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_limit::rate::{RateLimitConfig, RateLimitLayer};
use tower_prism_limit::Error;

/// Two tokens, one more a minute (none refills within the test).
fn two_tokens() -> RateLimitLayer {
    RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(1)
            .period(Duration::from_secs(60))
            .burst(2)
            .build()
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_request_shed_below_the_rate_limit_gives_its_token_back() {
    let gate = Gate::default();
    let rate = two_tokens().refund_shed(true);
    let mut svc = rate.layer(fixed(1).layer(gate.clone()));

    // The first request holds the one concurrency permit (and one of the two tokens).
    let (reply, held) = oneshot::channel();
    let first = svc.ready().await.unwrap().call(held);
    assert_eq!(gate.active(), 1);
    // Shed by the concurrency limit, over and over: each gives its token back.
    for _ in 0..5 {
        let (_keep, rx) = oneshot::channel();
        let err = svc.ready().await.unwrap().call(rx).await.unwrap_err();
        assert!(
            matches!(concurrency_error(&err), Error::ConcurrencyLimited { .. }),
            "{err}"
        );
        assert_eq!(rate.handle().snapshot().tokens, 1, "the token came back");
    }
    reply.send(Ok(1)).unwrap();
    assert_eq!(first.await.unwrap(), 1);

    // Once the permit is free, the token the shed requests did not keep admits a request;
    // a request that reaches the upstream keeps its token.
    let (reply, rx) = oneshot::channel();
    let second = svc.ready().await.unwrap().call(rx);
    reply.send(Ok(2)).unwrap();
    assert_eq!(second.await.unwrap(), 2);
    let (_keep, rx) = oneshot::channel();
    let err = svc.ready().await.unwrap().call(rx).await.unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Error>(), Some(Error::RateLimited { .. })),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn by_default_a_request_shed_below_keeps_its_token_spent() {
    let gate = Gate::default();
    let rate = two_tokens();
    let mut svc = rate.layer(fixed(1).layer(gate.clone()));
    let (_reply, held) = oneshot::channel::<Result<u32, String>>();
    let _first = svc.ready().await.unwrap().call(held);
    let (_keep, rx) = oneshot::channel();
    let err = svc.ready().await.unwrap().call(rx).await.unwrap_err();
    assert!(
        matches!(concurrency_error(&err), Error::ConcurrencyLimited { .. }),
        "{err}"
    );
    assert_eq!(rate.handle().snapshot().tokens, 0, "both tokens spent");
}

/// A request that waited in the rate limit's queue and is then shed at once by the
/// concurrency limit gives its token back too, as one admitted at once does. The queued
/// path sent the request on with no check for a refusal below, so it kept the token.
#[tokio::test(start_paused = true)]
async fn a_request_shed_below_after_waiting_in_the_queue_gives_its_token_back() {
    let gate = Gate::default();
    let rate = RateLimitLayer::from_config(
        &RateLimitConfig::builder()
            .rate(1)
            .burst(1)
            .queue_size(8)
            .max_wait(Duration::from_secs(5))
            .build()
            .unwrap(),
    )
    .unwrap()
    .refund_shed(true);
    let mut svc = rate.layer(fixed(1).layer(gate.clone()));

    // The first request takes the token and holds the one concurrency permit.
    let (_reply, held) = oneshot::channel();
    let _first = svc.ready().await.unwrap().call(held);
    assert_eq!(gate.active(), 1);
    // The second waits a second in the rate queue for the next token, then is shed.
    let (_keep, rx) = oneshot::channel();
    let started = tokio::time::Instant::now();
    let err = svc.ready().await.unwrap().call(rx).await.unwrap_err();
    assert!(
        matches!(concurrency_error(&err), Error::ConcurrencyLimited { .. }),
        "{err}"
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "it waited its turn"
    );
    assert_eq!(rate.handle().snapshot().tokens, 1, "the token came back");
}
