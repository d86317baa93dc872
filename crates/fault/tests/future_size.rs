//! The stage's response future carries the inner call's future and little more: the state
//! of a delayed call (a timer, the request and a service clone) and an injected answer
//! (a whole response) are boxed. Unboxed, every call through the stage, and through every
//! stage above it, carried and copied them: an HTTP request is 248 bytes, a response 136.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::mem::size_of;
use std::task::{Context, Poll};

use tower_prism_fault::ResponseFuture;
use tower_service::Service;

/// A service with large requests and responses and a small future.
#[derive(Clone)]
struct Large;

impl Service<[u8; 512]> for Large {
    type Response = Box<[u8; 256]>;
    type Error = Infallible;
    type Future = Ready<Result<Box<[u8; 256]>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: [u8; 512]) -> Self::Future {
        ready(Ok(Box::new([0; 256])))
    }
}

#[test]
fn the_future_is_the_inner_one_and_a_box() {
    let inner = size_of::<<Large as Service<[u8; 512]>>::Future>();
    let stage = size_of::<ResponseFuture<Large, [u8; 512]>>();
    assert!(
        stage <= inner + 2 * size_of::<usize>(),
        "{stage} bytes over an inner future of {inner}"
    );
}
