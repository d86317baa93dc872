//! The service's own word that it sheds (a 429 or 503 with `Retry-After`) lowers the
//! adaptive limit, Vegas's included, which reads no other failure: at once when a retry
//! below waits the `Retry-After` out, and once per round for a burst of them.

use std::time::Duration;

use http::{Response, StatusCode};
use tokio::time::sleep;
use tower::{service_fn, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::internal::attempt;
use tower_prism_core::HttpClassifier;
use tower_prism_limit::concurrency::{ConcurrencyConfig, ConcurrencyLimitLayer, VegasConfig};

/// What the upstream answers: a status, and whether with `Retry-After: 1`.
#[derive(Clone, Copy)]
struct Answer(u16, bool);

fn answer(a: Answer) -> Response<()> {
    let mut response = Response::builder().status(StatusCode::from_u16(a.0).unwrap());
    if a.1 {
        response = response.header("retry-after", "1");
    }
    response.body(()).unwrap()
}

/// An upstream answering after 10 ms.
fn upstream(
) -> impl Service<Answer, Response = Response<()>, Error = &'static str, Future: Send> + Clone + Send
{
    service_fn(|a: Answer| async move {
        sleep(Duration::from_millis(10)).await;
        Ok(answer(a))
    })
}

fn layer() -> ConcurrencyLimitLayer<HttpClassifier> {
    ConcurrencyLimitLayer::builder(ConcurrencyConfig::default())
        .classify(HttpClassifier)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn only_a_failure_with_retry_after_lowers_the_vegas_limit() {
    let layer = layer();
    let limiter = layer.handle().clone();
    let svc = layer.layer(upstream());
    for plain in [Answer(500, false), Answer(503, false), Answer(500, true)] {
        svc.clone().oneshot(plain).await.unwrap();
    }
    // A 500 with a `Retry-After` is no shedding to the HTTP classifier (it reads the header
    // of 429 and 503 only).
    assert_eq!(
        limiter.snapshot().limit,
        20,
        "failures say nothing to Vegas"
    );
    svc.clone().oneshot(Answer(503, true)).await.unwrap();
    // 20 - log10(20)
    assert_eq!(limiter.snapshot().limit, 18, "the service said it sheds");
    svc.clone().oneshot(Answer(429, true)).await.unwrap();
    assert_eq!(limiter.snapshot().limit, 18, "one cut per round");
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_refusals_is_one_cut_per_round() {
    let layer = layer();
    let limiter = layer.handle().clone();
    let svc = layer.layer(upstream());
    for round in 0..3 {
        // A round of successes, then a burst of 10 refusals: the first one cuts.
        for _ in 0..20 {
            svc.clone().oneshot(Answer(200, false)).await.unwrap();
        }
        let before = limiter.snapshot().limit;
        let mut after = Vec::new();
        for _ in 0..10 {
            svc.clone().oneshot(Answer(503, true)).await.unwrap();
            after.push(limiter.snapshot().limit);
        }
        assert!(after[0] < before, "round {round}: {before} -> {after:?}");
        assert!(
            after.iter().all(|&l| l == after[0]),
            "round {round}: one cut per burst, {before} -> {after:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_waiting_out_retry_after_below_lowers_the_limit_at_once() {
    let layer = layer();
    let limiter = layer.handle().clone();
    // Stands for a retry stage: its first attempt was shed, and it now sleeps the
    // `Retry-After` out before the attempt that succeeds.
    let retry_below = service_fn(|()| async {
        std::future::poll_fn(|_| {
            attempt::parked(Some(Duration::from_secs(1)));
            std::task::Poll::Ready(())
        })
        .await;
        sleep(Duration::from_secs(1)).await;
        attempt::restarted();
        Ok::<_, &'static str>(answer(Answer(200, false)))
    });
    let mut svc = layer.layer(retry_below);
    let call = tokio::spawn(svc.ready().await.unwrap().call(()));
    sleep(Duration::from_millis(1)).await;
    assert_eq!(limiter.snapshot().in_flight, 1);
    assert_eq!(
        limiter.snapshot().limit,
        18,
        "lowered while the retry waits"
    );
    call.await.unwrap().unwrap();
    // A wait without the service's word (a plain backoff) is no shedding.
    let plain_backoff = service_fn(|()| async {
        std::future::poll_fn(|_| {
            attempt::parked(None);
            std::task::Poll::Ready(())
        })
        .await;
        Ok::<_, &'static str>(answer(Answer(200, false)))
    });
    let layer = self::layer();
    let limiter = layer.handle().clone();
    layer.layer(plain_backoff).oneshot(()).await.unwrap();
    assert_eq!(limiter.snapshot().limit, 20);
}

/// A service shedding every call keeps lowering the Vegas limit, as Netflix's Vegas does
/// on every drop, until it reaches the floor: the once-per-round guard also ends after a
/// round's worth of refusals. A round ended only after `limit` successes, which such a
/// service never gives, so the limit was cut once and then held (50 -> 48) for good.
#[tokio::test(start_paused = true)]
async fn a_service_shedding_every_call_keeps_lowering_the_vegas_limit() {
    let layer = ConcurrencyLimitLayer::builder(
        ConcurrencyConfig::builder()
            .initial_limit(50)
            .min_limit(1)
            .max_limit(100)
            .algorithm(VegasConfig::default())
            .build()
            .unwrap(),
    )
    .classify(HttpClassifier)
    .build()
    .unwrap();
    let limiter = layer.handle().clone();
    let svc = layer.layer(upstream());
    for _ in 0..1_000 {
        svc.clone().oneshot(Answer(503, true)).await.unwrap();
    }
    let limit = limiter.snapshot().limit;
    assert!(limit < 40, "limit {limit} after 1,000 refusals");
}
