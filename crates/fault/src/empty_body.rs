//! [`EmptyHttpBody`]: status responses for an `http::Response<B>` whose body type has no
//! `Default` (hyper's `Incoming`, or a body the caller only knows as a type parameter).

use std::any::Any;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{Empty, Full};

use crate::status::InjectStatus;

/// Builds an `http::Response<B>` with the status, no headers and an empty body, for any
/// `B: 'static`, when `B` is one of the body types it knows:
///
/// | body type                         | empty body          |
/// |-----------------------------------|---------------------|
/// | `String`                          | `String::new()`     |
/// | `Vec<u8>`                         | `Vec::new()`        |
/// | `()`                              | `()`                |
/// | `bytes::Bytes`                    | `Bytes::new()`      |
/// | `http_body_util::Full<Bytes>`     | `Full::new(Bytes::new())` |
/// | `http_body_util::Empty<Bytes>`    | `Empty::new()`      |
/// | `axum::body::Body` (feature `axum`) | `Body::empty()`   |
///
/// None of them allocates. For any other `B` (hyper's `Incoming`, `axum::body::Body`
/// without the feature, `http_body_util::combinators::BoxBody<Bytes, E>`, a body of your
/// own) it answers
/// `None`, and the status fault becomes [`Error::Injected`](crate::Error::Injected), as
/// [`InjectStatus`] documents. When the body type is `Default`, prefer
/// [`HttpStatus`](crate::HttpStatus), which builds any such body; with a body it does
/// not know, give [`status_with`](crate::FaultLayerBuilder::status_with) a closure.
///
/// Unlike [`NoStatus`](crate::NoStatus), a layer given it accepts a config with a
/// [`StatusFault`](crate::StatusFault).
///
/// ```
/// use http::StatusCode;
/// use tower_prism_fault::{EmptyHttpBody, InjectStatus};
///
/// let response: http::Response<bytes::Bytes> =
///     EmptyHttpBody.response(StatusCode::SERVICE_UNAVAILABLE).unwrap();
/// assert_eq!(response.status(), 503);
/// assert!(response.body().is_empty());
///
/// // a body type it does not know: no response
/// struct Streaming;
/// let none: Option<http::Response<Streaming>> = EmptyHttpBody.response(StatusCode::BAD_GATEWAY);
/// assert!(none.is_none());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyHttpBody;

impl<B: 'static> InjectStatus<http::Response<B>> for EmptyHttpBody {
    fn response(&self, status: StatusCode) -> Option<http::Response<B>> {
        let mut response = http::Response::new(empty_body::<B>()?);
        *response.status_mut() = status;
        Some(response)
    }
}

/// An empty `B` if `B` is a body type [`EmptyHttpBody`] knows. `B` is found by trying to
/// see an `Option<B>` slot as an `Option` of each known type: no allocation, no
/// `Default` bound, and the compiler folds the `TypeId` comparisons for a concrete `B`.
fn empty_body<B: 'static>() -> Option<B> {
    let mut slot: Option<B> = None;
    let any: &mut dyn Any = &mut slot;
    let known = fill(any, String::new)
        || fill(any, Vec::<u8>::new)
        || fill(any, || ())
        || fill(any, Bytes::new)
        || fill(any, || Full::new(Bytes::new()))
        || fill(any, Empty::<Bytes>::new)
        || fill_axum(any);
    debug_assert_eq!(known, slot.is_some());
    slot
}

/// An empty `axum::body::Body` in `slot` if it is an `Option` of one.
#[cfg(feature = "axum")]
fn fill_axum(slot: &mut dyn Any) -> bool {
    fill(slot, axum::body::Body::empty)
}

/// Without the `axum` feature, no axum body is known.
#[cfg(not(feature = "axum"))]
fn fill_axum(_: &mut dyn Any) -> bool {
    false
}

/// Puts `make()` in `slot` if it is an `Option<T>`; whether it was.
fn fill<T: 'static>(slot: &mut dyn Any, make: impl FnOnce() -> T) -> bool {
    match slot.downcast_mut::<Option<T>>() {
        Some(slot) => {
            *slot = Some(make());
            true
        }
        None => false,
    }
}
