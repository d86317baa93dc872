//! Errors become HTTP responses, so servers need no error handler.

use std::time::Duration;

use http::{Request, Response};
use tower::{service_fn, BoxError, Layer, ServiceExt};
use tower_prism::{Error, ErrorKind, HttpErrorLayer};

#[tokio::test]
async fn responses_pass_through_and_errors_become_statuses() {
    let inner = service_fn(|req: Request<&'static str>| async move {
        match *req.body() {
            "ok" => Ok(Response::new("fine".to_owned())),
            "slow" => Err::<_, BoxError>(Box::new(tower::timeout::error::Elapsed::new())),
            _ => Err("upstream exploded".into()),
        }
    });
    let service = HttpErrorLayer::new().layer(inner);

    let ok = service.clone().oneshot(Request::new("ok")).await.unwrap();
    assert_eq!((ok.status().as_u16(), ok.body().as_str()), (200, "fine"));
    let slow = service.clone().oneshot(Request::new("slow")).await.unwrap();
    assert_eq!(slow.status(), 504);
    let boom = service.clone().oneshot(Request::new("boom")).await.unwrap();
    assert_eq!(boom.status(), 502);
}

#[test]
fn an_unknown_error_is_inner_and_keeps_its_source() {
    let err = Error::from(BoxError::from("nope"));
    assert_eq!(err.kind(), ErrorKind::Inner);
    assert!(!err.kind().is_rejection());
    assert_eq!(err.retry_after(), None::<Duration>);
    assert_eq!(err.into_inner().to_string(), "nope");
}
