//! A call that waits for one endpoint's readiness in its response future (consistent
//! hashing sends a key to its own endpoint; a `call` made without `poll_ready` takes any
//! endpoint in rotation) when that endpoint leaves the rotation during the wait: it is
//! removed, or fails its health checks. The call is refused then, with
//! `NoHealthyEndpoint`, rather than wait for ever on an endpoint no new call would go to;
//! it leaves no in-flight count, and a new call for the key goes to its new endpoint.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{no_healthy, Ep};
use tower::{Service, ServiceExt};
use tower_prism_balance::{hash_key, Balance, BalanceConfig, Strategy};

type B = Balance<usize, Ep, u64>;

fn in_flight(b: &B) -> u64 {
    b.handle()
        .snapshot()
        .endpoints
        .iter()
        .map(|e| e.in_flight)
        .sum()
}

/// No endpoint fails its health check.
const NONE: usize = usize::MAX;

/// A consistent-hashing balancer over `eps`, with health checks every second when
/// `failing` is given (the endpoint it names fails them).
fn hashing(eps: &[Ep], failing: Option<Arc<AtomicUsize>>) -> B {
    let mut config = BalanceConfig::builder()
        .strategy(Strategy::ConsistentHash)
        .build()
        .unwrap();
    config.health_check.interval = Duration::from_secs(1);
    config.health_check.unhealthy_threshold = 1;
    let builder = Balance::builder()
        .config(config)
        .key_fn(|req: &u64| hash_key(req))
        .endpoints(eps.iter().map(|e| (e.id, e.clone())));
    match failing {
        Some(failing) => builder
            .health_check(move |key: &usize| {
                let passing = failing.load(Ordering::SeqCst) != *key;
                async move { passing }
            })
            .build()
            .unwrap(),
        None => builder.build().unwrap(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_on_an_endpoint_that_is_removed_is_refused() {
    let eps: Vec<Ep> = (0..3).map(Ep::new).collect();
    let mut b = hashing(&eps, None);
    let owner = b.ready().await.unwrap().call(7).await.unwrap();
    eps[owner].set_ready(false);
    let mut waiting = tokio_test::task::spawn(b.ready().await.unwrap().call(7));
    assert!(waiting.poll().is_pending(), "its endpoint is not ready");
    assert_eq!(in_flight(&b), 1);

    assert!(b.handle().remove(&owner));
    assert!(waiting.is_woken(), "the removal wakes it");
    match waiting.poll() {
        std::task::Poll::Ready(Err(error)) => assert_eq!(no_healthy(&error), Some(2), "{error}"),
        other => panic!("still waiting on a removed endpoint: {other:?}"),
    }
    assert_eq!(in_flight(&b), 0);
    assert_eq!(
        eps[owner].hits(),
        1,
        "the removed endpoint got only the first call"
    );
    let next = b.ready().await.unwrap().call(7).await.unwrap();
    assert_ne!(next, owner, "the key has a new endpoint");
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_on_an_endpoint_that_fails_its_checks_is_refused() {
    let eps: Vec<Ep> = (0..3).map(Ep::new).collect();
    let failing = Arc::new(AtomicUsize::new(NONE));
    let mut b = hashing(&eps, Some(failing.clone()));
    // the first round of probes passes
    tokio::time::sleep(Duration::from_millis(10)).await;
    let owner = b.ready().await.unwrap().call(7).await.unwrap();
    eps[owner].set_ready(false);
    let mut waiting = tokio_test::task::spawn(b.ready().await.unwrap().call(7));
    assert!(waiting.poll().is_pending(), "its endpoint is not ready");

    // The next round fails the key's endpoint.
    failing.store(owner, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1010)).await;
    assert!(waiting.is_woken(), "the failed check wakes it");
    match waiting.poll() {
        std::task::Poll::Ready(Err(error)) => assert_eq!(no_healthy(&error), Some(3), "{error}"),
        other => panic!("still waiting on an endpoint out of rotation: {other:?}"),
    }
    assert_eq!(in_flight(&b), 0);
    let next = b.ready().await.unwrap().call(7).await.unwrap();
    assert_ne!(next, owner, "the key has a new endpoint");
}

/// A call waiting on an endpoint still in rotation keeps waiting (it is not ready yet, as
/// a connection being made is not), and is answered once the endpoint is ready.
#[tokio::test(start_paused = true)]
async fn a_call_waiting_on_an_endpoint_in_rotation_keeps_waiting() {
    let eps: Vec<Ep> = (0..3).map(Ep::new).collect();
    let mut b = hashing(&eps, None);
    let owner = b.ready().await.unwrap().call(7).await.unwrap();
    eps[owner].set_ready(false);
    let mut waiting = tokio_test::task::spawn(b.ready().await.unwrap().call(7));
    assert!(waiting.poll().is_pending());
    // another endpoint leaves: the waiting call is woken, looks, and waits on
    let other = (owner + 1) % 3;
    assert!(b.handle().remove(&other));
    if waiting.is_woken() {
        assert!(
            waiting.poll().is_pending(),
            "its own endpoint is still in rotation"
        );
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(waiting.poll().is_pending());
    eps[owner].set_ready(true);
    assert!(waiting.is_woken());
    assert_eq!(waiting.await.unwrap(), owner);
    assert_eq!(in_flight(&b), 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_on_an_endpoint_that_is_ejected_is_refused() {
    let eps: Vec<Ep> = (0..3).map(Ep::new).collect();
    let mut b = hashing(&eps, None);
    let owner = b.ready().await.unwrap().call(7).await.unwrap();
    // Five calls for the key on their way to failing (five in a row eject it), then the
    // endpoint stops being ready and one more call for the key waits for it.
    eps[owner].set_failing(true);
    *eps[owner].delay.lock().unwrap() = Duration::from_millis(10);
    let mut failing = Vec::new();
    for _ in 0..5 {
        failing.push(tokio::spawn(b.ready().await.unwrap().call(7)));
    }
    tokio::task::yield_now().await;
    eps[owner].set_ready(false);
    let mut waiting = tokio_test::task::spawn(b.ready().await.unwrap().call(7));
    assert!(waiting.poll().is_pending(), "its endpoint is not ready");
    for call in failing {
        assert!(call.await.unwrap().is_err());
    }
    assert!(b.handle().snapshot().endpoints[owner].ejected);
    assert!(waiting.is_woken(), "the ejection wakes it");
    match waiting.poll() {
        std::task::Poll::Ready(Err(error)) => assert_eq!(no_healthy(&error), Some(3), "{error}"),
        other => panic!("still waiting on an ejected endpoint: {other:?}"),
    }
    assert_eq!(in_flight(&b), 0);
}
