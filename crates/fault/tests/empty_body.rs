//! `EmptyHttpBody`: empty status responses for the body types it knows, `None` for the
//! others, and a layer given it accepts status faults.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use tower::{service_fn, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_fault::{
    EmptyHttpBody, Error, FaultConfig, FaultLayer, InjectStatus, NoStatus, StatusFault,
};

fn respond<B: 'static>(status: u16) -> Option<Response<B>> {
    EmptyHttpBody.response(StatusCode::from_u16(status).unwrap())
}

/// The status is set, and nothing else: no header, no extension.
fn bare<B>(response: Response<B>, status: u16) -> B {
    assert_eq!(response.status(), status);
    assert!(response.headers().is_empty());
    assert!(response.extensions().is_empty());
    response.into_body()
}

#[test]
fn it_builds_every_body_type_it_knows_empty() {
    assert_eq!(bare(respond::<String>(503).unwrap(), 503), "");
    assert_eq!(
        bare(respond::<Vec<u8>>(429).unwrap(), 429),
        Vec::<u8>::new()
    );
    bare(respond::<()>(500).unwrap(), 500);
    assert_eq!(bare(respond::<Bytes>(502).unwrap(), 502), Bytes::new());
}

#[tokio::test]
async fn the_http_body_util_bodies_are_empty_streams() {
    let full = bare(respond::<Full<Bytes>>(504).unwrap(), 504);
    assert_eq!(full.collect().await.unwrap().to_bytes(), Bytes::new());
    let empty = bare(respond::<Empty<Bytes>>(418).unwrap(), 418);
    assert_eq!(empty.collect().await.unwrap().to_bytes(), Bytes::new());
}

#[test]
fn any_other_body_type_gets_no_response() {
    /// A body with no constructor, like hyper's `Incoming`.
    struct Opaque(#[allow(dead_code)] u8);
    assert!(respond::<Opaque>(503).is_none());
    // near misses are other types: a body of other chunks, a borrowed string
    assert!(respond::<Full<Vec<u8>>>(503).is_none());
    assert!(respond::<Empty<String>>(503).is_none());
    assert!(respond::<&'static str>(503).is_none());
    assert!(respond::<Box<String>>(503).is_none());
}

fn always_503() -> FaultConfig {
    FaultConfig::builder()
        .seed(1)
        .status(StatusFault::new(1.0, 503))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_layer_given_it_accepts_and_injects_status_faults() {
    let layer = FaultLayer::builder(always_503())
        .name("empty")
        .status_with(EmptyHttpBody)
        .build()
        .expect("EmptyHttpBody can build responses");
    layer.handle().reconfigure(&always_503()).unwrap();
    let upstream =
        service_fn(|_: ()| async { Ok::<_, Infallible>(Response::new(Bytes::from_static(b"up"))) });
    let mut svc = layer.layer(upstream);
    let response = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.body().is_empty());
    assert_eq!(layer.handle().snapshot().injected_statuses, 1);
}

#[tokio::test]
async fn with_a_body_it_does_not_know_the_status_fault_becomes_an_error() {
    struct Opaque;
    let layer = FaultLayer::builder(always_503())
        .status_with(EmptyHttpBody)
        .build()
        .unwrap();
    let upstream = service_fn(|_: ()| async { Ok::<_, Infallible>(Response::new(Opaque)) });
    let mut svc = layer.layer(upstream);
    let err = svc.ready().await.unwrap().call(()).await.err().unwrap();
    assert!(
        matches!(err.downcast_ref::<Error>(), Some(Error::Injected)),
        "{err}"
    );
    let snap = layer.handle().snapshot();
    assert_eq!((snap.injected_statuses, snap.injected_errors), (0, 1));
}

#[test]
fn a_layer_given_no_status_still_refuses_status_faults() {
    let err = FaultLayer::builder(always_503())
        .status_with(NoStatus)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "status");
    let layer = FaultLayer::builder(FaultConfig::default())
        .status_with(NoStatus)
        .build()
        .unwrap();
    assert_eq!(
        layer
            .handle()
            .reconfigure(&always_503())
            .unwrap_err()
            .field(),
        "status"
    );
}
