//! No protection: a plain client sending each request to the next endpoint in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tower::util::BoxCloneService;
use tower::{service_fn, ServiceExt};

use crate::load::Client;
use crate::upstream::{EndpointService, Request};

/// Round robin over `endpoints`, no retry, no limit, no timeout but the client's deadline.
pub fn build(endpoints: Vec<EndpointService>) -> Client {
    let endpoints = Arc::new(endpoints);
    let next = Arc::new(AtomicUsize::new(0));
    BoxCloneService::new(service_fn(move |request: Request| {
        let index = next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        endpoints[index].clone().oneshot(request)
    }))
}
