//! Switching the stage on and off, reconfiguring it, and refusing bad configs.

mod common;

use std::time::Duration;

use common::{Counting, Got};
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_fault::{
    Fault, FaultConfig, FaultLayer, HttpStatus, LatencyFault, NoStatus, StatusFault,
};

async fn call(svc: &mut Fault<Counting, NoStatus>, i: u64) -> Got {
    let result = ServiceExt::<u64>::ready(svc).await.unwrap().call(i).await;
    if let Ok(answer) = &result {
        assert_eq!(*answer, i, "the service's own answer, untouched");
    }
    Got::of(&result)
}

/// `base` changed by `change` (the config is `#[non_exhaustive]`: no struct literals).
fn with(base: FaultConfig, change: impl FnOnce(&mut FaultConfig)) -> FaultConfig {
    let mut config = base;
    change(&mut config);
    config
}

fn always_fail() -> FaultConfig {
    FaultConfig::builder().seed(1).error(1.0).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_disabled_stage_passes_every_call_untouched() {
    let config = with(always_fail(), |c| c.enabled = false);
    let inner = Counting::default();
    let layer = FaultLayer::from_config(&config).unwrap();
    let mut svc = layer.layer(inner.clone());
    for i in 0..1000 {
        assert_eq!(call(&mut svc, i).await, Got::Answer);
    }
    assert_eq!(inner.calls(), 1000);
    let snap = layer.handle().snapshot();
    assert!(!snap.enabled);
    assert_eq!((snap.calls, snap.injected_errors), (0, 0));
    assert_eq!(svc.get_ref().calls(), 1000);
}

#[tokio::test(start_paused = true)]
async fn zero_rates_pass_every_call_untouched() {
    let config = FaultConfig::builder()
        .latency(LatencyFault::fixed(0.0, Duration::from_secs(1)))
        .build()
        .unwrap();
    let inner = Counting::default();
    let layer = FaultLayer::from_config(&config).unwrap();
    let mut svc = layer.layer(inner.clone());
    let start = tokio::time::Instant::now();
    for i in 0..100 {
        assert_eq!(call(&mut svc, i).await, Got::Answer);
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(inner.calls(), 100);
    assert!(layer.handle().snapshot().enabled);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_switches_faults_on_and_off_for_the_next_call() {
    let layer = FaultLayer::from_config(&FaultConfig::default()).unwrap();
    let handle = layer.handle().clone();
    let mut svc = layer.layer(Counting::default());
    assert_eq!(call(&mut svc, 0).await, Got::Answer);

    handle.reconfigure(&always_fail()).unwrap();
    assert_eq!(call(&mut svc, 1).await, Got::Injected);
    assert_eq!(handle.config(), always_fail());

    let off = with(always_fail(), |c| c.enabled = false);
    handle.reconfigure(&off).unwrap();
    assert_eq!(call(&mut svc, 2).await, Got::Answer);
    assert!(!handle.snapshot().enabled);

    handle.reconfigure(&always_fail()).unwrap();
    assert_eq!(call(&mut svc, 3).await, Got::Injected);
    let snap = handle.snapshot();
    assert!(snap.enabled);
    assert_eq!((snap.calls, snap.injected_errors), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn a_bad_config_changes_nothing() {
    let layer = FaultLayer::from_config(&always_fail()).unwrap();
    let handle = layer.handle().clone();
    let mut svc = layer.layer(Counting::default());
    let bad = with(FaultConfig::default(), |c| c.error = 1.5);
    assert_eq!(handle.reconfigure(&bad).unwrap_err().field(), "error");
    // a status fault this layer cannot answer is refused too, as a whole
    let status = with(always_fail(), |c| {
        c.error = 0.0;
        c.status = Some(StatusFault::new(0.5, 503));
    });
    assert_eq!(handle.check(&status).unwrap_err().field(), "status");
    assert_eq!(handle.reconfigure(&status).unwrap_err().field(), "status");
    assert_eq!(handle.config(), always_fail());
    assert_eq!(call(&mut svc, 0).await, Got::Injected);
}

#[test]
fn bad_configs_are_errors_naming_the_field() {
    let ms = Duration::from_millis(1);
    let cases: Vec<(FaultConfig, &str)> = vec![
        (with(FaultConfig::default(), |c| c.error = 1.5), "error"),
        (
            with(FaultConfig::default(), |c| c.error = f64::NAN),
            "error",
        ),
        (with(FaultConfig::default(), |c| c.abort = -0.1), "abort"),
        (
            with(FaultConfig::default(), |c| c.abort = f64::INFINITY),
            "abort",
        ),
        (
            with(FaultConfig::default(), |c| {
                c.status = Some(StatusFault::new(f64::NAN, 503))
            }),
            "status.rate",
        ),
        (
            with(FaultConfig::default(), |c| {
                c.status = Some(StatusFault::new(0.1, 99))
            }),
            "status.code",
        ),
        (
            toml::from_str("status = { rate = 0.1, grpc_code = 17 }").unwrap(),
            "status.grpc_code",
        ),
        (
            toml::from_str("status = { rate = 0.1, code = 503, grpc_code = 14 }").unwrap(),
            "status",
        ),
        (
            with(FaultConfig::default(), |c| {
                c.latency = Some(LatencyFault::uniform(0.1, ms * 2, ms))
            }),
            "latency.min",
        ),
        (
            with(FaultConfig::default(), |c| {
                c.latency = Some(LatencyFault::fixed(1.01, ms))
            }),
            "latency.rate",
        ),
        (
            with(FaultConfig::default(), |c| {
                c.error = 0.6;
                c.abort = 0.5;
            }),
            "abort",
        ),
        (
            with(FaultConfig::default(), |c| {
                c.error = 0.5;
                c.status = Some(StatusFault::new(0.6, 503));
            }),
            "status.rate",
        ),
    ];
    for (config, field) in cases {
        let err = config.validate().unwrap_err();
        assert_eq!(err.field(), field, "{config:?}: {err}");
        assert_eq!(FaultLayer::from_config(&config).unwrap_err(), err);
    }
}

#[test]
fn a_status_fault_needs_a_status_builder() {
    let config = FaultConfig::builder()
        .status(StatusFault::new(0.1, 503))
        .build()
        .unwrap();
    let err = FaultLayer::from_config(&config).unwrap_err();
    assert_eq!(err.field(), "status");
    let layer = FaultLayer::builder(config.clone())
        .status_with(HttpStatus)
        .build()
        .unwrap();
    layer.handle().reconfigure(&config).unwrap();
    // a status at rate 0 asks nothing of the layer
    let idle = FaultConfig::builder()
        .status(StatusFault::new(0.0, 503))
        .build()
        .unwrap();
    assert!(FaultLayer::from_config(&idle).is_ok());
}

/// A `grpc_code` is taken only by a layer whose builder answers gRPC statuses
/// (`grpc_status_with`); an HTTP one refuses it, at build and at reload, naming
/// `status.grpc_code`, rather than failing those calls with an injected error.
#[test]
fn a_grpc_status_fault_needs_a_grpc_status_builder() {
    use tower_prism_core::GrpcCode;
    use tower_prism_fault::GrpcStatus;

    let config = FaultConfig::builder()
        .status(StatusFault::grpc(0.1, GrpcCode::Unavailable))
        .build()
        .unwrap();
    let err = FaultLayer::from_config(&config).unwrap_err();
    assert_eq!(err.field(), "status");
    let http = FaultLayer::builder(FaultConfig::default())
        .status_with(HttpStatus)
        .build()
        .unwrap();
    assert_eq!(
        http.handle().reconfigure(&config).unwrap_err().field(),
        "status.grpc_code"
    );
    let err = FaultLayer::builder(config.clone())
        .status_with(HttpStatus)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "status.grpc_code");
    let grpc = FaultLayer::builder(config.clone())
        .grpc_status_with(GrpcStatus)
        .build()
        .unwrap();
    // and HTTP statuses too
    grpc.handle()
        .reconfigure(&with(config, |c| {
            c.status = Some(StatusFault::new(0.1, 503))
        }))
        .unwrap();
    // `NoStatus` builds nothing, whichever way it is given
    let err = FaultLayer::builder(FaultConfig::default())
        .grpc_status_with(NoStatus)
        .build()
        .unwrap()
        .handle()
        .check(
            &FaultConfig::builder()
                .status(StatusFault::grpc(0.1, GrpcCode::Internal))
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert_eq!(err.field(), "status");
}

#[test]
fn toml_errors_name_the_field() {
    let err =
        toml::from_str::<FaultConfig>("latency = { rate = 0.1, fixed = \"soon\" }").unwrap_err();
    assert!(err.to_string().contains("soon"), "{err}");
    let config: FaultConfig = toml::from_str("latency = { rate = 0.1 }").unwrap();
    assert_eq!(config.validate().unwrap_err().field(), "latency");
}

#[tokio::test(start_paused = true)]
async fn a_new_seed_replays_from_its_start() {
    let layer = FaultLayer::from_config(&FaultConfig::default()).unwrap();
    let handle = layer.handle().clone();
    let mut svc = layer.layer(Counting::default());
    let seeded = |seed| {
        FaultConfig::builder()
            .seed(seed)
            .error(0.5)
            .build()
            .unwrap()
    };
    let mut runs = Vec::new();
    for seed in [5, 6, 5] {
        handle.reconfigure(&seeded(seed)).unwrap();
        let mut got = Vec::new();
        for i in 0..64 {
            got.push(call(&mut svc, i).await);
        }
        runs.push(got);
    }
    assert_eq!(runs[0], runs[2]);
    assert_ne!(runs[0], runs[1]);
    // the same seed again goes on where it was
    handle.reconfigure(&seeded(5)).unwrap();
    let mut more = Vec::new();
    for i in 0..64 {
        more.push(call(&mut svc, i).await);
    }
    assert_ne!(more, runs[2]);
}

/// `max_active_faults` reads from TOML and reloads like the other fields. An injected
/// answer holds its place until it is given, not until its future is dropped, and gives it
/// back once.
#[tokio::test(start_paused = true)]
async fn max_active_faults_reloads_and_an_answer_holds_its_place_until_given() {
    let config: FaultConfig =
        toml::from_str("seed = 1\nerror = 1.0\nmax_active_faults = 1").unwrap();
    assert_eq!(config.max_active_faults, Some(1));
    let layer = FaultLayer::from_config(&config).unwrap();
    let handle = layer.handle().clone();
    let mut svc = layer.layer(Counting::default());
    let mut first = Box::pin(ServiceExt::<u64>::ready(&mut svc).await.unwrap().call(0));
    assert_eq!(call(&mut svc, 1).await, Got::Answer, "over the limit");
    assert_eq!(Got::of(&(&mut first).await), Got::Injected);
    assert_eq!(
        call(&mut svc, 2).await,
        Got::Injected,
        "given back when answered"
    );
    drop(first);
    assert_eq!(handle.snapshot().active_faults, 0, "and only once");

    handle
        .reconfigure(&with(config.clone(), |c| c.max_active_faults = Some(0)))
        .unwrap();
    assert_eq!(call(&mut svc, 3).await, Got::Answer);
    handle
        .reconfigure(&with(config, |c| c.max_active_faults = None))
        .unwrap();
    let held: Vec<_> = (0..3).map(|i| Service::<u64>::call(&mut svc, i)).collect();
    assert_eq!(handle.snapshot().active_faults, 3, "no limit");
    drop(held);
    let snap = handle.snapshot();
    assert_eq!((snap.active_faults, snap.faults_overflow), (0, 2));
}

/// `max_active_faults` is checked once a call has drawn a fault, as Envoy's filter has
/// checked it since envoyproxy/envoy#12843 (`tryIncActiveFaults` after the draw): a call
/// arriving at the limit that draws no fault is no overflow, and every call takes its
/// draw, so a seeded stage draws the same sequence whatever its limit. A twin stage with
/// the same seed and no limit says which calls drew a fault.
#[tokio::test(start_paused = true)]
async fn only_a_call_that_draws_a_fault_at_the_limit_overflows() {
    let half = FaultConfig::builder().seed(21).error(0.5);
    let limited =
        FaultLayer::from_config(&half.clone().max_active_faults(1).build().unwrap()).unwrap();
    let twin = FaultLayer::from_config(&half.build().unwrap()).unwrap();
    let (mut svc, mut twin_svc) = (
        limited.layer(Counting::default()),
        twin.layer(Counting::default()),
    );
    let drew = |future: &dyn std::fmt::Debug| match format!("{future:?}").as_str() {
        "ResponseFuture::Fault" => true,
        "ResponseFuture::Called" => false,
        other => panic!("{other}"),
    };
    // The first call drawing a fault takes the only place; its unpolled future holds it.
    let mut before = 0;
    let held = loop {
        let future = Service::<u64>::call(&mut svc, before);
        let twin_drew = drew(&Service::<u64>::call(&mut twin_svc, before));
        assert_eq!(drew(&future), twin_drew, "call {before}: the same draw");
        before += 1;
        if twin_drew {
            break future;
        }
    };
    let mut drawn = 0;
    for i in 0..100 {
        let future = Service::<u64>::call(&mut svc, i);
        assert!(!drew(&future), "call {i}: at the limit, none");
        drawn += u64::from(drew(&Service::<u64>::call(&mut twin_svc, i)));
    }
    assert!((25..75).contains(&drawn), "about half: {drawn}");
    let snap = limited.handle().snapshot();
    assert_eq!(snap.faults_overflow, drawn, "only the calls that drew one");
    assert_eq!((snap.calls, snap.injected_errors), (before + 100, 1));
    assert_eq!(snap.active_faults, 1);
    drop(held);
    assert_eq!(limited.handle().snapshot().active_faults, 0);
}

#[test]
fn the_service_gives_its_inner_service_back() {
    let layer = FaultLayer::from_config(&FaultConfig::default()).unwrap();
    let mut svc = layer.layer(Counting::default());
    assert_eq!(svc.get_mut().calls(), 0);
    assert_eq!(svc.handle().unwrap().name(), "default");
    let inner: Counting = svc.into_inner();
    assert_eq!(inner.calls(), 0);
}
