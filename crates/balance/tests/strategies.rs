//! How each strategy distributes requests, and what consistent hashing needs.

mod common;

use std::time::Duration;

use common::{balance, eps, send, Ep, B};
use tower::{Service, ServiceExt};
use tower_prism_balance::{
    hash_key, Balance, BalanceBuilder, BalanceConfig, Error, OutlierConfig, Strategy,
};

#[tokio::test(start_paused = true)]
async fn round_robin_is_exact() {
    let eps = eps(3);
    let mut b = balance(Strategy::RoundRobin, &eps);
    let mut order = Vec::new();
    for i in 0..300 {
        order.push(send(&mut b, i).await.unwrap());
    }
    for w in order.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 3, "{order:?}");
    }
    for e in &eps {
        assert_eq!(e.hits(), 100);
    }
    // clones share the rotation (axum clones per request)
    let first = send(&mut b.clone(), 0).await.unwrap();
    let second = send(&mut b.clone(), 0).await.unwrap();
    assert_ne!(first, second);
}

/// With one endpoint ejected the others share its turns (Envoy: each available host in
/// round-robin order). Its successor took every one of them, twice the other's share,
/// and the next to be ejected under the extra load; least requests' ties did the same.
#[tokio::test(start_paused = true)]
async fn an_ejected_endpoints_turns_are_shared_by_the_others() {
    for strategy in [Strategy::RoundRobin, Strategy::LeastRequests] {
        let eps = eps(3);
        let outlier = OutlierConfig::builder()
            .consecutive_failures(3)
            .base_ejection_time(Duration::from_secs(600))
            .max_ejection_time(Duration::from_secs(600))
            .build()
            .unwrap();
        let config = BalanceConfig::builder()
            .strategy(strategy)
            .outlier(outlier)
            .build()
            .unwrap();
        let mut b = common::balance_with(config, &eps);
        eps[0].set_failing(true);
        for i in 0..9 {
            let _ = send(&mut b, i).await;
        }
        assert!(b.handle().snapshot().endpoints[0].ejected);
        let before = [eps[1].hits(), eps[2].hits()];
        for i in 0..300 {
            send(&mut b, i).await.unwrap();
        }
        let shares = [eps[1].hits() - before[0], eps[2].hits() - before[1]];
        assert!(
            shares[0].abs_diff(shares[1]) <= 2,
            "{strategy:?}: {shares:?}"
        );
    }
}

/// A `strategy` balancer over three endpoints weighing 5, 3 and 2.
fn weighted_5_3_2(strategy: Strategy, eps: &[Ep]) -> B {
    Balance::builder()
        .config(BalanceConfig::builder().strategy(strategy).build().unwrap())
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .weights([(0, 5), (1, 3), (2, 2)])
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn weighted_round_robin_follows_weights() {
    let eps = eps(3);
    let mut b = weighted_5_3_2(Strategy::WeightedRoundRobin, &eps);
    for i in 0..1000 {
        send(&mut b, i).await.unwrap();
    }
    let hits: Vec<usize> = eps.iter().map(Ep::hits).collect();
    for (h, want) in hits.iter().zip([500, 300, 200]) {
        assert!(h.abs_diff(want) <= 10, "{hits:?}");
    }
    // weights can change at runtime
    assert_eq!(b.handle().set_weight(&2, 5), Ok(true));
    assert!(b.handle().set_weight(&2, 0).is_err());
    for i in 0..1300 {
        send(&mut b, i).await.unwrap();
    }
    let more: Vec<usize> = eps.iter().zip(&hits).map(|(e, h)| e.hits() - h).collect();
    for (h, want) in more.iter().zip([500, 300, 500]) {
        assert!(h.abs_diff(want) <= 10, "{more:?}");
    }
}

/// Only a weighted round robin builds its schedule (endpoints times total weight: a second
/// per change at 10,000 endpoints of unequal weights, under the registry's lock, for every
/// strategy). Turning one on by reconfigure builds it then: the weights hold at once.
#[tokio::test(start_paused = true)]
async fn a_reconfigure_to_weighted_round_robin_builds_its_schedule() {
    let eps = eps(3);
    let mut b = weighted_5_3_2(Strategy::RoundRobin, &eps);
    for i in 0..300 {
        send(&mut b, i).await.unwrap();
    }
    let before: Vec<usize> = eps.iter().map(Ep::hits).collect();
    assert_eq!(before, [100, 100, 100], "a round robin ignores the weights");
    let weighted = BalanceConfig::builder()
        .strategy(Strategy::WeightedRoundRobin)
        .build()
        .unwrap();
    b.handle().reconfigure(&weighted).unwrap();
    for i in 0..1000 {
        send(&mut b, i).await.unwrap();
    }
    let after: Vec<usize> = eps.iter().zip(&before).map(|(e, h)| e.hits() - h).collect();
    assert_eq!(
        after,
        [500, 300, 200],
        "the weights, from the first call on"
    );
}

#[tokio::test(start_paused = true)]
async fn least_requests_spreads_outstanding_calls() {
    let eps: Vec<Ep> = (0..3)
        .map(|i| Ep::new(i).with_delay(Duration::from_secs(10)))
        .collect();
    let mut b = balance(Strategy::LeastRequests, &eps);
    let mut pending = Vec::new();
    for i in 0..30 {
        let fut = b.ready().await.unwrap().call(i);
        pending.push(tokio::spawn(fut));
    }
    for e in &eps {
        assert_eq!(e.hits(), 10, "every endpoint holds a third of the calls");
    }
    let snap = b.handle().snapshot();
    assert!(snap.endpoints.iter().all(|e| e.in_flight == 10), "{snap:?}");
    for p in pending {
        p.await.unwrap().unwrap();
    }
    assert!(b
        .handle()
        .snapshot()
        .endpoints
        .iter()
        .all(|e| e.in_flight == 0));
}

/// Over endpoints whose weights differ, least requests is Envoy's weighted least request:
/// they share the picks in proportion to `weight / (in_flight + 1)`, so idle endpoints
/// take calls by weight, and calls held on weights 3 and 1 settle where the heavier
/// endpoint's share of new calls matches its share of those held, at sqrt(3) to 1. It
/// ignored the weights: a third each, and an even split of the calls held.
#[tokio::test(start_paused = true)]
async fn least_requests_follows_weights_that_differ() {
    let eps = eps(3);
    let mut b = weighted_5_3_2(Strategy::LeastRequests, &eps);
    for i in 0..1000 {
        send(&mut b, i).await.unwrap();
    }
    let hits: Vec<usize> = eps.iter().map(Ep::hits).collect();
    for (h, want) in hits.iter().zip([500, 300, 200]) {
        assert!(h.abs_diff(want) <= 50, "{hits:?}");
    }

    let eps: Vec<Ep> = (0..2)
        .map(|i| Ep::new(i).with_delay(Duration::from_secs(10)))
        .collect();
    let mut b: B = Balance::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::LeastRequests)
                .build()
                .unwrap(),
        )
        .weighted_endpoint(0, eps[0].clone(), 3)
        .weighted_endpoint(1, eps[1].clone(), 1)
        .build()
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..400 {
        let fut = b.ready().await.unwrap().call(i);
        pending.push(tokio::spawn(fut));
    }
    // 400 * sqrt(3) / (1 + sqrt(3))
    let held = eps[0].hits();
    assert!(held.abs_diff(254) <= 20, "{held} of 400 on the weight 3");
    for p in pending {
        p.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn p2c_prefers_the_fast_endpoint() {
    let eps = vec![
        Ep::new(0).with_delay(Duration::from_millis(5)),
        Ep::new(1).with_delay(Duration::from_millis(5)),
        Ep::new(2).with_delay(Duration::from_millis(200)),
    ];
    let mut b = balance(Strategy::P2cPeakEwma, &eps);
    for i in 0..600 {
        send(&mut b, i).await.unwrap();
    }
    let slow = eps[2].hits();
    assert!(slow < 30, "slow endpoint got {slow} of 600");
    assert!(eps[0].hits() > 200 && eps[1].hits() > 200);
    let snap = b.handle().snapshot();
    assert!(
        snap.endpoints[2].latency_ewma >= Duration::from_millis(150),
        "{snap:?}"
    );
}

/// P2C spreads its picks over every endpoint, whether one balancer makes every call or
/// each call goes through a fresh clone (as a server that clones its service per request
/// does): clones draw from streams of their own, not the same first pair each.
#[tokio::test(start_paused = true)]
async fn p2c_spreads_picks_over_every_endpoint() {
    const CALLS: u64 = 800;
    for per_call_clones in [false, true] {
        let eps = common::eps(8);
        let mut b = balance(Strategy::P2cPeakEwma, &eps);
        for i in 0..CALLS {
            if per_call_clones {
                send(&mut b.clone(), i).await.unwrap();
            } else {
                send(&mut b, i).await.unwrap();
            }
        }
        let hits: Vec<usize> = eps.iter().map(Ep::hits).collect();
        assert!(
            hits.iter().all(|&h| h >= 50),
            "per-call clones {per_call_clones}: {hits:?}"
        );
        let snapshot = b.handle().snapshot();
        let requests: Vec<usize> = snapshot
            .endpoints
            .iter()
            .map(|e| e.requests as usize)
            .collect();
        assert_eq!(
            requests, hits,
            "every call counted as its endpoint's request"
        );
    }
}

/// A consistent-hash balancer keyed by the request itself, endpoints to add.
fn hashing() -> BalanceBuilder<usize, Ep, u64> {
    let config = BalanceConfig::builder().strategy(Strategy::ConsistentHash);
    Balance::builder()
        .config(config.build().unwrap())
        .key_fn(|req: &u64| hash_key(req))
}

#[tokio::test(start_paused = true)]
async fn consistent_hash_is_stable_and_moves_few_keys() {
    let eps = eps(5);
    let mut b: B = hashing()
        .endpoints(eps.iter().map(|e| (e.id, e.clone())))
        .build()
        .unwrap();
    let mut owner = Vec::new();
    for k in 0..500u64 {
        let a = send(&mut b, k).await.unwrap();
        assert_eq!(send(&mut b, k).await.unwrap(), a, "same key, same endpoint");
        owner.push(a);
    }
    b.handle().remove(&3);
    for k in 0..500u64 {
        let now = send(&mut b, k).await.unwrap();
        if owner[k as usize] != 3 {
            assert_eq!(
                now, owner[k as usize],
                "key {k} moved though its endpoint stayed"
            );
        } else {
            assert_ne!(now, 3);
        }
    }
    b.handle().add(3, eps[3].clone()).unwrap();
    b.handle().add(9, Ep::new(9)).unwrap();
    let mut moved = 0;
    for k in 0..500u64 {
        let now = send(&mut b, k).await.unwrap();
        if now != owner[k as usize] {
            assert_eq!(now, 9, "only the new endpoint takes keys");
            moved += 1;
        }
    }
    assert!(
        (40..140).contains(&moved),
        "about 1/6 of keys move, got {moved}"
    );
    // ejected endpoints pass their keys to the runner-up, without waiting
    eps[0].set_failing(true);
    let key = (0..500u64).find(|k| owner[*k as usize] == 0).unwrap();
    assert!(send(&mut b, key).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn consistent_hash_shares_keys_by_weight() {
    // as Envoy's ring hash and Maglev: an endpoint of weight 3 owns about 3 keys in 4
    let eps = eps(2);
    let mut b: B = hashing()
        .weighted_endpoint(0, eps[0].clone(), 3)
        .weighted_endpoint(1, eps[1].clone(), 1)
        .build()
        .unwrap();
    let mut on_heavy = 0;
    for k in 0..2_000u64 {
        on_heavy += usize::from(send(&mut b, k).await.unwrap() == 0);
    }
    assert!((1_400..1_600).contains(&on_heavy), "{on_heavy} of 2,000");
    // equal weights again: an even split
    b.handle().set_weight(&0, 1).unwrap();
    let mut on_first = 0;
    for k in 0..2_000u64 {
        on_first += usize::from(send(&mut b, k).await.unwrap() == 0);
    }
    assert!((850..1_150).contains(&on_first), "{on_first} of 2,000");
}

#[tokio::test(start_paused = true)]
async fn consistent_hash_needs_a_key_fn() {
    let err = Balance::<usize, Ep, u64>::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::ConsistentHash)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref c) if c.field() == "strategy"),
        "{err}"
    );
    let b = balance(Strategy::RoundRobin, &eps(1));
    let mut config = BalanceConfig::default();
    config.strategy = Strategy::ConsistentHash;
    assert!(b.handle().reconfigure(&config).is_err());
}
