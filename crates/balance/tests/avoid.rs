//! The balancer's side of hedging: inside `route::call_avoiding(mask, ..)` every strategy
//! prefers an endpoint outside the mask, falls back to an avoided one when no other is
//! healthy, and reports its pick; outside it nothing changes.

mod common;

use common::{balance, eps, send, Ep, B};
use tower::{Service, ServiceExt};
use tower_prism_balance::{Balance, BalanceConfig, Strategy};
use tower_prism_core::internal::route::{call_avoiding, endpoint_bit};

const STRATEGIES: [Strategy; 5] = [
    Strategy::P2cPeakEwma,
    Strategy::RoundRobin,
    Strategy::WeightedRoundRobin,
    Strategy::LeastRequests,
    Strategy::ConsistentHash,
];

fn keyed(strategy: Strategy, eps: &[Ep]) -> B {
    Balance::builder()
        .config(BalanceConfig::builder().strategy(strategy).build().unwrap())
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .key_fn(|req: &u64| *req)
        .build()
        .unwrap()
}

/// One call inside `call_avoiding(mask)`: the endpoint that answered and the bit reported.
async fn send_avoiding(b: &mut B, req: u64, mask: u64) -> (usize, u64) {
    let ready = b.ready().await.unwrap();
    let (future, picked) = call_avoiding(mask, || ready.call(req));
    (future.await.unwrap(), picked)
}

fn balancer(strategy: Strategy, eps: &[Ep]) -> B {
    if strategy == Strategy::ConsistentHash {
        keyed(strategy, eps)
    } else {
        balance(strategy, eps)
    }
}

#[tokio::test(start_paused = true)]
async fn every_strategy_avoids_the_masked_endpoints() {
    for strategy in STRATEGIES {
        let eps = eps(3);
        let mut b = balancer(strategy, &eps);
        for req in 0..30u64 {
            let mask = endpoint_bit((req % 3) as usize);
            let (id, picked) = send_avoiding(&mut b, req, mask).await;
            assert_ne!(
                endpoint_bit(id),
                mask,
                "{strategy:?}: sent to an avoided endpoint"
            );
            assert_eq!(
                picked,
                endpoint_bit(id),
                "{strategy:?}: the pick is reported"
            );
            // two of three avoided: the third it is
            let mask = !endpoint_bit((req % 3) as usize);
            let (id, _) = send_avoiding(&mut b, req, mask).await;
            assert_eq!(id, (req % 3) as usize, "{strategy:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn with_every_endpoint_avoided_any_healthy_one_answers() {
    for strategy in STRATEGIES {
        let eps = eps(3);
        let mut b = balancer(strategy, &eps);
        let (id, picked) = send_avoiding(&mut b, 7, u64::MAX).await;
        assert!(id < 3, "{strategy:?}");
        assert_eq!(picked, endpoint_bit(id), "{strategy:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_ejected_endpoint_is_not_a_way_out() {
    // endpoint 2 fails until it is ejected; with 0 avoided, only 1 is left
    for strategy in [Strategy::RoundRobin, Strategy::P2cPeakEwma] {
        let eps = eps(3);
        let mut b = balancer(strategy, &eps);
        eps[2].set_failing(true);
        for req in 0..100 {
            let _ = send(&mut b, req).await;
        }
        let snapshot = b.handle().snapshot();
        assert!(snapshot.endpoints[2].ejected, "{strategy:?}: {snapshot:?}");
        for req in 0..10 {
            let (id, _) = send_avoiding(&mut b, req, endpoint_bit(0)).await;
            assert_eq!(id, 1, "{strategy:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn consistent_hash_keeps_the_key_unless_it_is_avoided() {
    let eps = eps(3);
    let mut b = keyed(Strategy::ConsistentHash, &eps);
    for key in 0..20u64 {
        let own = send(&mut b, key).await.unwrap();
        // avoiding another endpoint changes nothing
        let other = (own + 1) % 3;
        let (id, _) = send_avoiding(&mut b, key, endpoint_bit(other)).await;
        assert_eq!(id, own, "key {key}");
        // avoiding its own: the runner-up, the same one every time
        let (a, _) = send_avoiding(&mut b, key, endpoint_bit(own)).await;
        let (b2, _) = send_avoiding(&mut b, key, endpoint_bit(own)).await;
        assert_ne!(a, own);
        assert_eq!(a, b2, "key {key}: the runner-up is stable");
    }
}

#[tokio::test(start_paused = true)]
async fn outside_a_hedge_nothing_changes() {
    let eps = eps(3);
    let mut b = balance(Strategy::RoundRobin, &eps);
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(send(&mut b, 0).await.unwrap());
    }
    assert_eq!(
        &seen[..3],
        &seen[3..],
        "round robin order as before: {seen:?}"
    );
    let (_, picked) = call_avoiding(0, || ());
    assert_eq!(picked, 0, "nothing reported outside the balancer");
}
