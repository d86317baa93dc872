//! [`Carrier`]: what a deadline stage can read from and write into a request type, and
//! its two implementations, [`AnyRequest`] and [`HttpRequest`].

use tower_prism_core::RequestDeadline;

use crate::header::HeaderSpec;

/// What a deadline stage can read from and write into a request of type `Req`: the
/// deadline it came with, and the deadline for the next hop.
///
/// [`AnyRequest`] reads and writes nothing (any type; the stage still sets the ambient
/// [`RequestDeadline::current`] for the stages below); [`HttpRequest`] reads and writes an
/// `http::Request`'s extension and header. Implement it for a request type of your own
/// that carries a deadline; it is called once per call, so keep it cheap.
pub trait Carrier<Req>: Clone + Send + Sync + 'static {
    /// The deadline `req` came with, if any: `header` is the configured deadline header
    /// (`None` when there is none, or when only the in-process deadline may be read).
    fn read(&self, req: &Req, header: Option<&HeaderSpec>) -> Option<RequestDeadline>;

    /// Writes `deadline` into `req` for the stages and hops after this one: `header` is the
    /// header to write the time left into (`None` when there is none or propagation is
    /// off).
    fn write(&self, req: &mut Req, deadline: RequestDeadline, header: Option<&HeaderSpec>);
}

/// A [`Carrier`] for any request type that reads and writes nothing: only the policy's
/// timeout and the ambient [`RequestDeadline::current`] apply (the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnyRequest;

impl<Req> Carrier<Req> for AnyRequest {
    #[inline]
    fn read(&self, _: &Req, _: Option<&HeaderSpec>) -> Option<RequestDeadline> {
        None
    }

    #[inline]
    fn write(&self, _: &mut Req, _: RequestDeadline, _: Option<&HeaderSpec>) {}
}

/// A [`Carrier`] for `http::Request<B>`.
///
/// Reads the [`RequestDeadline`] extension and the configured header (the time left, in
/// the header's format) and takes the earlier; a header value that does not parse is
/// ignored, with a `tracing` debug event. Writes the extension, and the header with the
/// time left, rounded down, replacing any value already there.
///
/// ```
/// use std::time::Duration;
/// use tower_prism_core::RequestDeadline;
/// use tower_prism_deadline::{Carrier, HeaderFormat, HeaderSpec, HttpRequest};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let spec = HeaderSpec::new("grpc-timeout", HeaderFormat::Auto).unwrap();
/// let mut request = http::Request::builder()
///     .header("grpc-timeout", "2S")
///     .body(())
///     .unwrap();
/// let read = HttpRequest.read(&request, Some(&spec)).unwrap();
/// assert_eq!(read.remaining(), Duration::from_secs(2));
///
/// HttpRequest.write(&mut request, RequestDeadline::after(Duration::from_millis(300)), Some(&spec));
/// assert_eq!(request.headers()["grpc-timeout"], "300000u");
/// assert!(RequestDeadline::of(&request).is_some());
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpRequest;

impl<B> Carrier<http::Request<B>> for HttpRequest {
    fn read(&self, req: &http::Request<B>, header: Option<&HeaderSpec>) -> Option<RequestDeadline> {
        let from_header = header.and_then(|spec| {
            let value = req.headers().get(spec.name())?;
            let parsed = spec.parse(value.as_bytes());
            if parsed.is_none() {
                tracing::debug!(
                    header = %spec.name(),
                    value = %String::from_utf8_lossy(&value.as_bytes()[..value.len().min(64)]),
                    "ignoring a deadline header that does not parse"
                );
            }
            // The caller's clock started before the request reached any queue above.
            parsed.map(RequestDeadline::after_received)
        });
        RequestDeadline::earliest(RequestDeadline::of(req), from_header)
    }

    fn write(
        &self,
        req: &mut http::Request<B>,
        deadline: RequestDeadline,
        header: Option<&HeaderSpec>,
    ) {
        deadline.set(req);
        if let Some(spec) = header {
            let value = spec.encode(deadline.remaining());
            req.headers_mut().insert(spec.name().clone(), value);
        }
    }
}
