//! Injection rates for a seed: within statistical bounds for every fault kind, and the
//! same sequence for the same seed.

mod common;

use std::time::Duration;

use common::{Counting, Got};
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_fault::{FaultConfig, FaultLayer, HttpStatus, LatencyFault, StatusFault};

const CALLS: u64 = 10_000;

/// `CALLS` calls through a stage with `config`: what each call got, and the service.
async fn run(config: FaultConfig) -> (Vec<Got>, Counting, tower_prism_fault::FaultSnapshot) {
    let inner = Counting::default();
    let layer = FaultLayer::from_config(&config).unwrap();
    let mut svc = layer.layer(inner.clone());
    let mut got = Vec::with_capacity(CALLS as usize);
    for i in 0..CALLS {
        let result = ServiceExt::<u64>::ready(&mut svc)
            .await
            .unwrap()
            .call(i)
            .await;
        got.push(Got::of(&result));
    }
    (got, inner, layer.handle().snapshot())
}

fn share(got: &[Got], what: Got) -> f64 {
    got.iter().filter(|g| **g == what).count() as f64 / got.len() as f64
}

#[tokio::test(start_paused = true)]
async fn error_rate_is_within_bounds() {
    let (got, inner, snap) = run(FaultConfig::builder().seed(1).error(0.2).build().unwrap()).await;
    let errors = share(&got, Got::Injected);
    assert!((errors - 0.2).abs() <= 0.02, "{errors}");
    assert_eq!(snap.injected_errors as f64 / CALLS as f64, errors);
    assert_eq!(snap.calls, CALLS);
    // a failed call never reaches the service
    assert_eq!(inner.calls(), CALLS - snap.injected_errors);
}

#[tokio::test(start_paused = true)]
async fn exclusive_faults_split_by_their_rates() {
    let config = FaultConfig::builder()
        .seed(2)
        .error(0.1)
        .abort(0.3)
        .build()
        .unwrap();
    let (got, inner, snap) = run(config).await;
    let (errors, aborts) = (share(&got, Got::Injected), share(&got, Got::Aborted));
    assert!((errors - 0.1).abs() <= 0.015, "{errors}");
    assert!((aborts - 0.3).abs() <= 0.02, "{aborts}");
    assert_eq!(share(&got, Got::Other), 0.0);
    assert_eq!(snap.injected_aborts, (aborts * CALLS as f64).round() as u64);
    assert_eq!(
        inner.calls(),
        CALLS - snap.injected_errors - snap.injected_aborts
    );
}

#[tokio::test(start_paused = true)]
async fn status_rate_is_within_bounds() {
    let config = FaultConfig::builder()
        .seed(3)
        .status(StatusFault::new(0.05, 503))
        .build()
        .unwrap();
    let layer = FaultLayer::builder(config)
        .status_with(HttpStatus)
        .build()
        .unwrap();
    let inner = tower::service_fn(|_: u64| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::from("real")))
    });
    let mut svc = layer.layer(inner);
    let mut statuses = 0u64;
    for i in 0..CALLS {
        let response = svc.ready().await.unwrap().call(i).await.unwrap();
        if response.status() == 503 {
            assert!(response.body().is_empty());
            statuses += 1;
        } else {
            assert_eq!(response.body(), "real");
        }
    }
    let rate = statuses as f64 / CALLS as f64;
    assert!((rate - 0.05).abs() <= 0.01, "{rate}");
    assert_eq!(layer.handle().snapshot().injected_statuses, statuses);
}

#[tokio::test(start_paused = true)]
async fn latency_rate_is_within_bounds_and_independent() {
    let config = FaultConfig::builder()
        .seed(4)
        .error(0.5)
        .latency(LatencyFault::fixed(0.2, Duration::from_millis(10)))
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let (got, _, snap) = run(config).await;
    let delayed = snap.injected_latency as f64 / CALLS as f64;
    assert!((delayed - 0.2).abs() <= 0.02, "{delayed}");
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(10) * snap.injected_latency as u32
    );
    assert!((share(&got, Got::Injected) - 0.5).abs() <= 0.02);
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_faults_in_the_same_order() {
    let config = |seed| {
        FaultConfig::builder()
            .seed(seed)
            .error(0.2)
            .abort(0.1)
            .build()
            .unwrap()
    };
    let (a, _, _) = run(config(9)).await;
    let (b, _, _) = run(config(9)).await;
    let (c, _, _) = run(config(10)).await;
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[tokio::test(start_paused = true)]
async fn unseeded_stages_differ() {
    let config = FaultConfig::builder().error(0.5).build().unwrap();
    let (a, _, _) = run(config.clone()).await;
    let (b, _, _) = run(config).await;
    assert_ne!(a, b);
}

/// The faults of seed 42, pinned: a change to how draws are made (which would make a
/// recorded seeded run replay differently) must be made on purpose, here.
#[tokio::test(start_paused = true)]
async fn seed_42_draws_what_it_always_drew() {
    let config = FaultConfig::builder()
        .seed(42)
        .error(0.2)
        .abort(0.2)
        .build()
        .unwrap();
    let (got, _, _) = run(config).await;
    let text: String = got[..40]
        .iter()
        .map(|g| match g {
            Got::Answer => '.',
            Got::Injected => 'E',
            Got::Aborted => 'A',
            Got::Other => '?',
        })
        .collect();
    assert_eq!(text, ".EA.....A..E.A....AAEE.AE.EA..E.E.A.....");
}
