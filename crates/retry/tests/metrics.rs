//! The retry stage counts each call it answers once in `prism_retry_calls_total`, by
//! whether it succeeded and whether it was retried (resilience4j's four kinds), and each
//! retry in `prism_retry_retries_total`: attempts per call are `1 + retries / calls`.

mod common;

use tower::Layer;
use tower_prism_retry::Backoff;
use tower_prism_testkit::metrics::Capture;

use common::{flaky, layer, run, Log, MS};

fn calls(capture: &Capture, result: &str) -> u64 {
    capture.counter(&format!(
        "prism_retry_calls_total{{name=default,result={result}}}"
    ))
}

#[tokio::test(start_paused = true)]
async fn each_call_counts_once_by_its_result_and_whether_it_was_retried() {
    let capture = Capture::default();
    let (twice, once) = metrics::with_local_recorder(&capture, || {
        (layer(2, Backoff::fixed(MS)), layer(1, Backoff::fixed(MS)))
    });

    // At once; after one retry; after two failed attempts; one failed attempt and no
    // retry allowed.
    run(&mut twice.layer(flaky(Log::default(), 0)), 1)
        .await
        .unwrap();
    run(&mut twice.layer(flaky(Log::default(), 1)), 2)
        .await
        .unwrap();
    run(&mut twice.layer(flaky(Log::default(), usize::MAX)), 3)
        .await
        .unwrap_err();
    run(&mut once.layer(flaky(Log::default(), usize::MAX)), 4)
        .await
        .unwrap_err();

    assert_eq!(calls(&capture, "successful_without_retry"), 1);
    assert_eq!(calls(&capture, "successful_with_retry"), 1);
    assert_eq!(calls(&capture, "failed_with_retry"), 1);
    assert_eq!(calls(&capture, "failed_without_retry"), 1);
    assert_eq!(
        capture.counter("prism_retry_retries_total{name=default,reason=error}"),
        2,
        "one retry each for the second and the third call"
    );
}
