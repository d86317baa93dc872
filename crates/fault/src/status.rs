//! [`InjectStatus`]: how the stage builds the service's response for a status fault.

use http::{HeaderValue, StatusCode};
use tower_prism_core::{GrpcCode, GRPC_MESSAGE};

/// Builds a response of the service's type `Res` carrying `status`, for a
/// [`StatusFault`](crate::StatusFault). Given to
/// [`FaultLayerBuilder::status_with`](crate::FaultLayerBuilder::status_with), or to
/// [`grpc_status_with`](crate::FaultLayerBuilder::grpc_status_with) for one that also
/// builds gRPC statuses.
///
/// [`HttpStatus`] builds `http::Response<B>`, [`GrpcStatus`] gRPC answers too; a closure
/// `Fn(StatusCode) -> Option<Res>` builds anything else. Answering `None` turns the fault
/// into [`Error::Injected`](crate::Error::Injected).
pub trait InjectStatus<Res> {
    /// A response with `status`, or `None` if this type cannot say it.
    fn response(&self, status: StatusCode) -> Option<Res>;

    /// A response with the gRPC status `code` (a `grpc_code` fault), or `None` if this
    /// type cannot say it: the default. A layer takes a `grpc_code` only from
    /// [`grpc_status_with`](crate::FaultLayerBuilder::grpc_status_with).
    fn grpc_response(&self, code: GrpcCode) -> Option<Res> {
        let _ = code;
        None
    }
}

/// No response can be built: the default of a [`FaultLayer`](crate::FaultLayer), for a
/// service of any response type. A layer (or a
/// [`reconfigure`](crate::FaultHandle::reconfigure)) given a config with a status fault
/// refuses it with a [`ConfigError`](tower_prism_core::ConfigError) naming `status`,
/// rather than failing those calls some other way at run time.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStatus;

impl<Res> InjectStatus<Res> for NoStatus {
    fn response(&self, _: StatusCode) -> Option<Res> {
        None
    }
}

/// Builds an `http::Response<B>` with the status, no headers and an empty (`Default`)
/// body, without allocating.
///
/// ```
/// use http::StatusCode;
/// use tower_prism_fault::{HttpStatus, InjectStatus};
///
/// let response: http::Response<String> = HttpStatus.response(StatusCode::BAD_GATEWAY).unwrap();
/// assert_eq!(response.status(), 502);
/// assert!(response.body().is_empty());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpStatus;

impl<B: Default> InjectStatus<http::Response<B>> for HttpStatus {
    fn response(&self, status: StatusCode) -> Option<http::Response<B>> {
        let mut response = http::Response::new(B::default());
        *response.status_mut() = status;
        Some(response)
    }
}

/// Builds an `http::Response<B>` (`B: Default`) for a gRPC service: an HTTP status as
/// [`HttpStatus`] does, and a gRPC status as a gRPC server fails a call, a Trailers-Only
/// response ([`GrpcCode::trailers_only`]: HTTP 200, `content-type: application/grpc`,
/// `grpc-status`) with `grpc-message: injected fault`, which a gRPC client and
/// [`GrpcClassifier`](tower_prism_core::GrpcClassifier) read as that status. Give it to
/// [`grpc_status_with`](crate::FaultLayerBuilder::grpc_status_with).
///
/// ```
/// use http::StatusCode;
/// use tower_prism_core::GrpcCode;
/// use tower_prism_fault::{GrpcStatus, InjectStatus};
///
/// let response: http::Response<String> = GrpcStatus.grpc_response(GrpcCode::Unavailable).unwrap();
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["grpc-status"], "14");
/// assert_eq!(response.headers()["grpc-message"], "injected fault");
/// let http: http::Response<String> = GrpcStatus.response(StatusCode::BAD_GATEWAY).unwrap();
/// assert_eq!(http.status(), 502);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcStatus;

impl<B: Default> InjectStatus<http::Response<B>> for GrpcStatus {
    fn response(&self, status: StatusCode) -> Option<http::Response<B>> {
        HttpStatus.response(status)
    }

    fn grpc_response(&self, code: GrpcCode) -> Option<http::Response<B>> {
        let mut response = code.trailers_only();
        // What `Error::Injected` says; printable ASCII, so no percent-encoding.
        response
            .headers_mut()
            .insert(GRPC_MESSAGE, HeaderValue::from_static("injected fault"));
        Some(response)
    }
}

impl<Res, F> InjectStatus<Res> for F
where
    F: Fn(StatusCode) -> Option<Res>,
{
    fn response(&self, status: StatusCode) -> Option<Res> {
        self(status)
    }
}
