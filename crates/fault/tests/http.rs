//! Status faults answer with the service's own response type, HTTP or gRPC statuses;
//! injected errors read as retryable failures to tower-prism's classifiers.

use std::convert::Infallible;
use std::time::Duration;

use http::{Response, StatusCode};
use tower::{service_fn, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::{
    BoxError, Classify, DefaultClassifier, GrpcClassifier, HttpClassifier, Outcome,
};
use tower_prism_fault::{
    Error, FaultConfig, FaultLayer, GrpcStatus, HttpStatus, LatencyFault, StatusFault,
};

fn upstream() -> impl Service<
    http::Request<()>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|_req: http::Request<()>| async { Ok(Response::new("upstream".to_owned())) })
}

#[tokio::test(start_paused = true)]
async fn a_status_fault_answers_an_http_response_without_calling() {
    let config = FaultConfig::builder()
        .seed(1)
        .status(StatusFault::new(1.0, 503))
        .latency(LatencyFault::fixed(1.0, Duration::from_millis(40)))
        .build()
        .unwrap();
    let layer = FaultLayer::builder(config)
        .name("http")
        .status_with(HttpStatus)
        .build()
        .unwrap();
    let mut svc = layer.layer(upstream());
    let start = tokio::time::Instant::now();
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.body(), "");
    assert!(response.headers().is_empty());
    assert_eq!(start.elapsed(), Duration::from_millis(40));
    // an injected 503 reads as the real one would
    let outcome = Classify::<_, BoxError>::classify(&HttpClassifier, Ok(&response));
    assert_eq!(outcome, Outcome::RETRYABLE);
    let snap = layer.handle().snapshot();
    assert_eq!((snap.injected_statuses, snap.injected_latency), (1, 1));
}

/// A gRPC status fault (Envoy's `abort.grpc_status`) answers as a gRPC server fails a
/// call: HTTP 200, Trailers-Only, `grpc-status` 14, which `GrpcClassifier` reads as a
/// retryable `UNAVAILABLE`. A fault could only carry an HTTP status, which a gRPC client
/// reads through gRPC's HTTP mapping, with no way to say `NOT_FOUND` or `INTERNAL`.
#[tokio::test(start_paused = true)]
async fn a_grpc_status_fault_answers_trailers_only_with_its_code() {
    let config: FaultConfig =
        toml::from_str("seed = 1\nstatus = { rate = 1.0, grpc_code = 14 }").unwrap();
    let layer = FaultLayer::builder(config)
        .name("grpc")
        .grpc_status_with(GrpcStatus)
        .build()
        .unwrap();
    let mut svc = layer.layer(upstream());
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(response.headers()["grpc-message"], "injected fault");
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.body(), "");
    let outcome = Classify::<_, BoxError>::classify(&GrpcClassifier::new(), Ok(&response));
    assert_eq!(outcome, Outcome::RETRYABLE);
    assert_eq!(layer.handle().snapshot().injected_statuses, 1);

    // an HTTP status still answers as one through the same builder
    let http = FaultConfig::builder()
        .status(StatusFault::new(1.0, 503))
        .build()
        .unwrap();
    layer.handle().reconfigure(&http).unwrap();
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().is_empty());
}

#[tokio::test]
async fn a_closure_builds_other_response_types_or_declines() {
    let config = FaultConfig::builder()
        .seed(2)
        .status(StatusFault::new(1.0, 429))
        .build()
        .unwrap();
    let inner = service_fn(|n: u16| async move { Ok::<_, Infallible>(n) });
    // answers with the status code as the response
    let layer = FaultLayer::builder(config.clone())
        .status_with(|status: StatusCode| Some(status.as_u16()))
        .build()
        .unwrap();
    let mut svc = layer.layer(inner);
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 429);
    // a builder that declines turns the fault into an injected error, counted as one
    let layer = FaultLayer::builder(config)
        .status_with(|_: StatusCode| None::<u16>)
        .build()
        .unwrap();
    let mut svc = layer.layer(inner);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(matches!(err.downcast_ref::<Error>(), Some(Error::Injected)));
    let snap = layer.handle().snapshot();
    assert_eq!((snap.injected_statuses, snap.injected_errors), (0, 1));
}

#[tokio::test]
async fn injected_errors_and_aborts_are_retryable_failures() {
    for (config, want_abort) in [
        (
            FaultConfig::builder().seed(3).error(1.0).build().unwrap(),
            false,
        ),
        (
            FaultConfig::builder().seed(3).abort(1.0).build().unwrap(),
            true,
        ),
    ] {
        let layer = FaultLayer::builder(config)
            .status_with(HttpStatus)
            .build()
            .unwrap();
        let mut svc = layer.layer(upstream());
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap_err();
        let http = Classify::<Response<String>, BoxError>::classify(&HttpClassifier, Err(&err));
        let default = Classify::<(), BoxError>::classify(&DefaultClassifier, Err(&err));
        assert_eq!(http, Outcome::RETRYABLE);
        assert_eq!(default, Outcome::RETRYABLE);
        let fault = err.downcast_ref::<Error>().unwrap();
        if want_abort {
            let source = std::error::Error::source(fault).unwrap();
            let io = source.downcast_ref::<std::io::Error>().unwrap();
            assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        } else {
            assert!(matches!(fault, Error::Injected));
        }
    }
}
