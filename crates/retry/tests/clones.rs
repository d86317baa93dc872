//! What a call clones of the inner service: nothing when its first attempt answers (the
//! first attempt goes through the service `poll_ready` readied); a call that retries sends
//! its retries through a clone of the service the stage first called, made when the first
//! retry is due.

mod common;

use std::future::Ready;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{BoxError, Layer, Service};
use tower_prism_retry::Backoff;

use common::{layer, run, MS};

/// Fails the attempts whose number (from 1, across clones) is in `failing`; counts the
/// clones made of it, and which clone (0: the original) served each attempt.
#[derive(Default)]
struct Counted {
    clones: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
    failing: Vec<usize>,
    /// 0 for the service the test made, n for the n-th clone.
    id: usize,
    served: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        let id = self.clones.fetch_add(1, Ordering::SeqCst) + 1;
        Counted {
            clones: self.clones.clone(),
            attempts: self.attempts.clone(),
            failing: self.failing.clone(),
            id,
            served: self.served.clone(),
        }
    }
}

impl Service<u32> for Counted {
    type Response = u32;
    type Error = BoxError;
    type Future = Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        self.served.lock().unwrap().push(self.id);
        if self.failing.contains(&attempt) {
            return std::future::ready(Err("failed".into()));
        }
        std::future::ready(Ok(n))
    }
}

#[tokio::test(start_paused = true)]
async fn calls_answered_at_once_clone_the_service_at_most_once_in_all() {
    let inner = Counted::default();
    let clones = inner.clones.clone();
    let mut retry = layer(3, Backoff::fixed(MS)).layer(inner);
    for n in 0..20 {
        assert_eq!(run(&mut retry, n).await.unwrap(), n);
    }
    // Each call cloned the service for its retries, whether or not it would make any:
    // reference-count increments and decrements on every call, and with a balancer
    // below, its whole handle.
    assert!(
        clones.load(Ordering::SeqCst) <= 1,
        "{} clones for 20 calls",
        clones.load(Ordering::SeqCst)
    );
}

#[tokio::test(start_paused = true)]
async fn retries_go_through_a_clone_of_the_service_made_when_a_retry_is_due() {
    let inner = Counted {
        failing: vec![1, 2, 4],
        ..Counted::default()
    };
    let (clones, served) = (inner.clones.clone(), inner.served.clone());
    let mut retry = layer(3, Backoff::fixed(MS)).layer(inner);
    // Attempts 1 and 2 fail, 3 answers; then attempt 4 fails and 5 answers.
    assert_eq!(run(&mut retry, 7).await.unwrap(), 7);
    assert_eq!(run(&mut retry, 8).await.unwrap(), 8);
    let served = served.lock().unwrap().clone();
    assert_eq!(served.len(), 5);
    assert_eq!(
        served[0], 0,
        "the first attempt goes through the readied service"
    );
    assert_eq!(served[3], 0);
    assert_ne!(served[1], 0, "a retry goes through a clone");
    assert_eq!(
        served[1], served[2],
        "one clone serves all of a call's retries"
    );
    assert_ne!(served[4], 0);
    assert_ne!(
        served[4], served[1],
        "each call retrying makes its own clone"
    );
    assert!(clones.load(Ordering::SeqCst) <= 3);
}

/// The kept clone is behind a lock: a service that is `Send` but not `Sync` (a
/// `BoxCloneService`, anything with a `Cell`) still makes a stage and futures that can
/// move between threads.
#[test]
fn a_send_only_service_makes_a_send_stage_and_future() {
    fn send<T: Send>(_: &T) {}
    let last = std::cell::Cell::new(0u32);
    let send_only = tower::service_fn(move |n: u32| {
        last.set(n);
        std::future::ready(Ok::<_, BoxError>(n))
    });
    let mut retry = layer(3, Backoff::fixed(MS)).layer(send_only);
    send(&retry);
    send(&retry.call(1));
}
