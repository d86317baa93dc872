//! Reloads arrive in a storm while the stack is under load: one task reloads valid and
//! invalid configs in a loop while others send requests through every stage. No request
//! is lost or hangs (each ends in a response or a typed rejection), every refused reload
//! changes no setting, and what runs at the end is the last accepted config.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Service, ServiceExt};
use tower_prism::balance::{BalanceHandle, Strategy};
use tower_prism::{Error, Policies, ReliabilityConfig, ReliabilityLayer};

const SENDERS: usize = 4;
const REQUESTS_PER_SENDER: usize = 2_000;
const RELOADS: usize = 400;
/// Rates whose interval is a whole number of nanoseconds, so they read back exactly.
const EXACT_RATES: [u32; 6] = [10_000, 20_000, 25_000, 40_000, 50_000, 100_000];

/// An endpoint that yields once, so requests are in flight while reloads land.
#[derive(Clone)]
struct Echo;

impl Service<u32> for Echo {
    type Response = u32;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, Infallible>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, n: u32) -> Self::Future {
        Box::pin(async move {
            tokio::task::yield_now().await;
            Ok(n)
        })
    }
}

/// The settings a reload changes, and how they read back from the running stages.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Settings {
    rate: u32,
    max_limit: u32,
    max_attempts: u32,
    strategy: Strategy,
}

fn toml(s: Settings, broken: bool) -> String {
    let strategy = match s.strategy {
        Strategy::RoundRobin => "round_robin",
        _ => "least_requests",
    };
    // a broken config is valid except for one stage checked late (the balancer cannot hash
    // without a key function), so a half-applied reload would show in the earlier stages
    let strategy = if broken { "consistent_hash" } else { strategy };
    format!(
        r#"
        [policy.api.rate_limit]
        rate = {rate}
        burst = 1000
        [policy.api.concurrency_limit]
        initial_limit = 4
        min_limit = 1
        max_limit = {max_limit}
        [policy.api.circuit_breaker]
        minimum_calls = 20
        [policy.api.retry]
        max_attempts = {max_attempts}
        [policy.api.balance]
        strategy = "{strategy}"
        "#,
        rate = s.rate,
        max_limit = s.max_limit,
        max_attempts = s.max_attempts,
    )
}

fn running(layer: &ReliabilityLayer, balancer: &BalanceHandle<u8, Echo>) -> Settings {
    let snap = layer.snapshot();
    let rate = snap.rate_limit.unwrap().rate_per_second.round() as u32;
    Settings {
        rate,
        max_limit: snap.concurrency_limit.unwrap().max_limit,
        max_attempts: snap.retry.unwrap().max_attempts,
        strategy: balancer.snapshot().strategy,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_in_a_storm_lose_no_request_and_leave_the_last_accepted_config() {
    let first = Settings {
        rate: 100_000,
        max_limit: 50,
        max_attempts: 2,
        strategy: Strategy::RoundRobin,
    };
    let policies =
        Policies::new(&ReliabilityConfig::from_toml(&toml(first, false)).unwrap()).unwrap();
    let layer = policies.get("api").unwrap();
    let balance = layer
        .balancer::<u8, Echo, u32>()
        .endpoints([(1, Echo), (2, Echo), (3, Echo)])
        .build()
        .unwrap();
    let balancer = balance.handle().clone();
    let service = layer.balanced(balance);

    let reloading = Arc::new(AtomicBool::new(true));
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (service, reloading) = (service.clone(), reloading.clone());
            tokio::spawn(async move {
                let (mut answered, mut rejected) = (0usize, 0usize);
                // at least REQUESTS_PER_SENDER, and on until the last reload is done, so
                // every reload lands while requests are in flight
                let mut i = 0;
                while i < REQUESTS_PER_SENDER || reloading.load(Ordering::Acquire) {
                    let n = (sender * 1_000_000 + i) as u32;
                    i += 1;
                    match service.clone().oneshot(n).await {
                        Ok(echo) => {
                            assert_eq!(echo, n);
                            answered += 1;
                        }
                        Err(e) => {
                            let e = Error::from_box(e);
                            assert!(e.kind().is_rejection(), "request {n}: {e}");
                            rejected += 1;
                            // A rejection is ready at once: yield, or four senders
                            // rejected in a tight loop starve the reloader of both
                            // worker threads (the adaptive limit may sit at its floor).
                            tokio::task::yield_now().await;
                        }
                    }
                }
                (answered, rejected, i)
            })
        })
        .collect();

    let reloader = {
        let (policies, layer, balancer, reloading) = (
            policies.clone(),
            layer.clone(),
            balancer.clone(),
            reloading.clone(),
        );
        tokio::spawn(async move {
            let mut accepted = first;
            let (mut accepted_count, mut refused_count) = (0, 0);
            for i in 0..RELOADS as u32 {
                let next = Settings {
                    rate: EXACT_RATES[i as usize % EXACT_RATES.len()],
                    max_limit: 10 + i % 90,
                    max_attempts: 1 + i % 4,
                    strategy: if i % 2 == 0 {
                        Strategy::LeastRequests
                    } else {
                        Strategy::RoundRobin
                    },
                };
                let broken = i % 3 == 0;
                match policies.reload_toml(&toml(next, broken)) {
                    Ok(()) => {
                        assert!(!broken, "reload {i}: a broken config was accepted");
                        accepted = next;
                        accepted_count += 1;
                    }
                    Err(e) => {
                        assert!(broken, "reload {i}: a valid config was refused: {e}");
                        refused_count += 1;
                    }
                }
                assert_eq!(running(&layer, &balancer), accepted, "after reload {i}");
                tokio::task::yield_now().await;
            }
            reloading.store(false, Ordering::Release);
            (accepted, accepted_count, refused_count)
        })
    };

    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        let mut total = 0;
        for sender in senders {
            let (answered, rejected, sent) = sender.await.unwrap();
            assert_eq!(answered + rejected, sent, "every request answered");
            assert!(sent >= REQUESTS_PER_SENDER);
            total += sent;
        }
        (total, reloader.await.unwrap())
    })
    .await
    .expect("a request or a reload hung");
    let (total, (last, accepted, refused)) = outcome;
    assert!(total >= SENDERS * REQUESTS_PER_SENDER, "{total}");
    assert!(!reloading.load(Ordering::Acquire));
    assert_eq!(
        (accepted, refused),
        (RELOADS * 2 / 3, RELOADS - RELOADS * 2 / 3)
    );
    assert_eq!(running(&layer, &balancer), last);
    assert_eq!(layer.snapshot().concurrency_limit.unwrap().in_flight, 0);
}
