//! [`InjectStatus`]: how the stage builds the service's response for a status fault.

use http::StatusCode;

/// Builds a response of the service's type `Res` carrying `status`, for a
/// [`StatusFault`](crate::StatusFault). Given to
/// [`FaultLayerBuilder::status_with`](crate::FaultLayerBuilder::status_with).
///
/// [`HttpStatus`] builds `http::Response<B>`; a closure `Fn(StatusCode) -> Option<Res>`
/// builds anything else (a gRPC status answer...). Answering `None` turns the fault
/// into [`Error::Injected`](crate::Error::Injected).
pub trait InjectStatus<Res> {
    /// A response with `status`, or `None` if this type cannot say it.
    fn response(&self, status: StatusCode) -> Option<Res>;
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

impl<Res, F> InjectStatus<Res> for F
where
    F: Fn(StatusCode) -> Option<Res>,
{
    fn response(&self, status: StatusCode) -> Option<Res> {
        self(status)
    }
}
