//! Deadlines read from an HTTP request: the configured header in each format, the
//! `RequestDeadline` extension, and bad header values, which are ignored.

use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_prism_core::{BoxError, RequestDeadline};
use tower_prism_deadline::{
    Deadline, DeadlineConfig, DeadlineLayer, Error, ExpiryReason, HeaderFormat, HttpRequest,
};

const MS: Duration = Duration::from_millis(1);

type Request = http::Request<()>;

/// A deadline stage reading `header` in `format`, over an upstream that answers at once
/// with the deadline extension it was given.
fn stage(
    timeout: Option<Duration>,
    header: &str,
    format: HeaderFormat,
) -> Deadline<
    impl Service<Request, Response = Option<RequestDeadline>, Error = BoxError>,
    HttpRequest,
> {
    let config = DeadlineConfig::builder()
        .timeout(timeout)
        .header(header)
        .header_format(format)
        .build()
        .unwrap();
    let layer = DeadlineLayer::builder(config)
        .carrier(HttpRequest)
        .build()
        .unwrap();
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|req: Request| async move {
            Ok::<_, BoxError>(RequestDeadline::of(&req))
        }))
}

fn with_header(name: &str, value: HeaderValue) -> Request {
    let mut req = http::Request::new(());
    req.headers_mut().insert(
        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value,
    );
    req
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_is_read_in_every_unit() {
    let mut svc = stage(None, "grpc-timeout", HeaderFormat::Auto);
    let cases = [
        ("2H", Duration::from_secs(7200)),
        ("3M", Duration::from_secs(180)),
        ("4S", Duration::from_secs(4)),
        ("250m", MS * 250),
        ("750u", Duration::from_micros(750)),
        ("900n", Duration::from_nanos(900)),
    ];
    for (value, timeout) in cases {
        let req = with_header("grpc-timeout", HeaderValue::from_static(value));
        let now = Instant::now();
        let seen = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(seen, Some(RequestDeadline::at(now + timeout)), "{value}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_header_deadline_shorter_than_the_policy_expires_the_call() {
    let config = DeadlineConfig::builder()
        .timeout(MS * 1000)
        .header("x-request-timeout-ms")
        .build()
        .unwrap();
    let layer = DeadlineLayer::builder(config)
        .carrier(HttpRequest)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: Request| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, BoxError>(())
        }));
    let req = with_header("x-request-timeout-ms", HeaderValue::from_static("120"));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert_eq!(start.elapsed(), MS * 120);
    assert_eq!(
        err.downcast_ref::<Error>(),
        Some(&Error::Expired {
            after: MS * 120,
            reason: ExpiryReason::Request
        })
    );
}

#[tokio::test(start_paused = true)]
async fn milliseconds_and_seconds_headers_are_read() {
    let mut ms = stage(None, "x-request-timeout-ms", HeaderFormat::Auto);
    let now = Instant::now();
    let req = with_header("x-request-timeout-ms", HeaderValue::from_static("250"));
    let seen = ms.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(seen, Some(RequestDeadline::at(now + MS * 250)));

    let mut secs = stage(None, "x-timeout", HeaderFormat::Seconds);
    let req = with_header("x-timeout", HeaderValue::from_static("1.5"));
    let seen = secs.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(seen, Some(RequestDeadline::at(now + MS * 1500)));
}

#[tokio::test(start_paused = true)]
async fn bad_header_values_are_ignored() {
    let mut svc = stage(Some(MS * 300), "grpc-timeout", HeaderFormat::Auto);
    let bad = [
        HeaderValue::from_static(""),
        HeaderValue::from_static("abc"),
        HeaderValue::from_static("-5S"),
        HeaderValue::from_static("1.5S"),
        HeaderValue::from_static("123456789m"),
        HeaderValue::from_static("10"),
        HeaderValue::from_static("10x"),
        HeaderValue::from_bytes(b"\xff\xfe1S").unwrap(),
    ];
    for value in bad {
        let now = Instant::now();
        let req = with_header("grpc-timeout", value.clone());
        let seen = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(
            seen,
            Some(RequestDeadline::at(now + MS * 300)),
            "{value:?}: only the policy applies"
        );
    }
    // and with no policy, a bad header leaves the call untimed
    let mut untimed = stage(None, "grpc-timeout", HeaderFormat::Auto);
    let req = with_header("grpc-timeout", HeaderValue::from_static("soon"));
    let fut = untimed.ready().await.unwrap().call(req);
    assert!(format!("{fut:?}").contains("Plain"), "{fut:?}");
    assert_eq!(fut.await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn the_earlier_of_the_header_and_the_extension_wins() {
    let mut svc = stage(None, "grpc-timeout", HeaderFormat::Auto);
    for (header, extension, expected) in [(100u32, 200u32, 100u32), (300, 50, 50)] {
        let now = Instant::now();
        let mut req = with_header(
            "grpc-timeout",
            HeaderValue::from_str(&format!("{header}m")).unwrap(),
        );
        RequestDeadline::after(MS * extension).set(&mut req);
        let seen = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(seen, Some(RequestDeadline::at(now + MS * expected)));
    }
}
