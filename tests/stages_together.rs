//! The stages that are crates of their own, composed with a policy in a `ServiceBuilder`:
//! a deadline above the stack reaches its retry stage (for any request type), and a
//! policy's hedges race a slow endpoint made slow by the fault-injection stage; a limit
//! above a retry times the attempt that answered.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower::{service_fn, BoxError, Layer, ServiceBuilder, ServiceExt};
use tower_prism::deadline::{DeadlineConfig, DeadlineLayer};
use tower_prism::fault::{FaultConfig, FaultLayer, LatencyFault};
use tower_prism::{Error, ErrorKind, ReliabilityConfig, ReliabilityLayer};

#[tokio::test(start_paused = true)]
async fn a_deadline_above_the_policy_stops_retries_that_cannot_finish() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.upstream.circuit_breaker]
        [policy.upstream.retry]
        max_attempts = 5
        backoff = { kind = "fixed", base = "200ms", jitter = "none" }
        "#,
    )
    .unwrap();
    let policy = ReliabilityLayer::from_config(&config, "upstream").unwrap();
    let deadline = DeadlineConfig::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let service = ServiceBuilder::new()
        .layer(DeadlineLayer::from_config(&deadline).unwrap())
        .layer(policy)
        .service(service_fn(move |_request: u32| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Err::<u32, _>(std::io::Error::other("down")) }
        }));

    let start = tokio::time::Instant::now();
    let error = Error::from_box(service.oneshot(7).await.unwrap_err());
    // attempt at 0, backoff to 200 ms, attempt; a second backoff would end at 400 ms,
    // after the deadline: the retry stage gives up at once instead of sleeping into it
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(error.kind(), ErrorKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn a_policys_hedges_beat_an_endpoint_the_fault_stage_made_slow() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.upstream.retry]
        max_attempts = 2
        [policy.upstream.retry.hedge]
        delay = "50ms"
        [policy.upstream.balance]
        strategy = "round_robin"
        "#,
    )
    .unwrap();
    let policy = ReliabilityLayer::from_config(&config, "upstream").unwrap();
    let slow = FaultConfig::builder()
        .latency(LatencyFault::fixed(1.0, Duration::from_secs(1)))
        .build()
        .unwrap();
    let answer = service_fn(|request: u32| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<u32, BoxError>(request)
    });
    let endpoints = ["slow", "fast-1", "fast-2"].map(|name| {
        let faults = if name == "slow" {
            slow.clone()
        } else {
            FaultConfig::default()
        };
        (
            name,
            FaultLayer::from_config(&faults).unwrap().layer(answer),
        )
    });
    let service = policy.layer_endpoints(endpoints).unwrap();

    for request in 0..6 {
        let start = tokio::time::Instant::now();
        let answer = service.clone().oneshot(request).await.unwrap();
        assert_eq!(answer, request);
        // a fast endpoint answers in 10 ms; the slow one is raced by a hedge at 50 ms
        assert!(
            start.elapsed() <= Duration::from_millis(60),
            "call {request} took {:?}",
            start.elapsed()
        );
    }
    // every call that went to the slow endpoint was hedged, and every hedge won (the
    // hedges take round-robin turns too, so which calls those are follows from the order)
    let retry = policy.snapshot().retry.unwrap();
    assert!(retry.hedges_sent >= 2, "{retry:?}");
    assert_eq!(retry.hedges_won, retry.hedges_sent, "{retry:?}");
    assert_eq!(retry.cancelled_attempts, retry.hedges_sent, "{retry:?}");
}

/// Over a balancer, a retry goes to an endpoint its call has not tried (the README's
/// promise, and Envoy's `previous_hosts` predicate): with one endpoint of three failing at
/// once and ejection off, every call's one retry lands on a healthy endpoint. Retries went
/// through the balancer's pick again, and P2C, seeing the failing endpoint answer fastest,
/// sent many of them back to it.
#[tokio::test(start_paused = true)]
async fn over_a_balancer_a_retry_goes_to_an_endpoint_not_tried() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.upstream.retry]
        max_attempts = 2
        backoff = { kind = "fixed", base = "1ms" }
        budget = { enabled = false }
        [policy.upstream.balance.outlier]
        enabled = false
        "#,
    )
    .unwrap();
    let policy = ReliabilityLayer::from_config(&config, "upstream").unwrap();
    let failing = Arc::new(AtomicU32::new(0));
    let endpoint = |fails: bool| {
        let failing = failing.clone();
        service_fn(move |request: u32| {
            let failing = failing.clone();
            async move {
                if fails {
                    failing.fetch_add(1, Ordering::SeqCst);
                    return Err::<u32, BoxError>("refused".into());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(request)
            }
        })
    };
    let endpoints = [("bad", true), ("good-1", false), ("good-2", false)]
        .map(|(name, fails)| (name, endpoint(fails)));
    let service = policy.layer_endpoints(endpoints).unwrap();
    for request in 0..60 {
        assert_eq!(service.clone().oneshot(request).await.unwrap(), request);
    }
    assert!(
        failing.load(Ordering::SeqCst) > 0,
        "the failing endpoint was tried"
    );
}

/// A policy of a concurrency limit (`limit`: its settings) over a retry stage that retries
/// once after a fixed 200 ms, with no budget.
fn limit_over_one_retry(limit: &str) -> ReliabilityLayer {
    let config = ReliabilityConfig::from_toml(&format!(
        r#"
        [policy.upstream.concurrency_limit]
        {limit}
        [policy.upstream.retry]
        max_attempts = 2
        backoff = {{ kind = "fixed", base = "200ms", jitter = "none" }}
        budget = {{ enabled = false }}
        "#
    ))
    .unwrap();
    ReliabilityLayer::from_config(&config, "upstream").unwrap()
}

/// A concurrency limit above a retry times the attempt that answered, not the backoff
/// before it: a request retried once after a 200 ms backoff, each attempt taking 5 ms, is
/// not a 205 ms call that queued. A regression test: an AIMD limit with a 100 ms latency
/// threshold read every retried request as slow and cut itself from 20 to 1.
#[tokio::test(start_paused = true)]
async fn a_limit_above_a_retry_times_the_attempt_that_answered() {
    let policy = limit_over_one_retry(
        r#"initial_limit = 20
        algorithm = { kind = "aimd", latency_threshold = "100ms" }"#,
    );
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let service = policy.layer(service_fn(move |request: u32| {
        let call = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if call.is_multiple_of(2) {
                Err::<u32, BoxError>("a failed first attempt".into())
            } else {
                Ok(request)
            }
        }
    }));

    for request in 0..10 {
        let start = tokio::time::Instant::now();
        assert_eq!(service.clone().oneshot(request).await.unwrap(), request);
        assert_eq!(start.elapsed(), Duration::from_millis(210));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    let limit = policy.snapshot().concurrency_limit.unwrap().limit;
    assert_eq!(limit, 20, "no retried request read as slow");
}

/// A request dropped while it sleeps in a retry's backoff gives its concurrency slot back
/// once: the count of requests in flight stays right and the limit still admits one.
#[tokio::test(start_paused = true)]
async fn a_request_dropped_in_its_backoff_leaves_the_limit_whole() {
    let policy = limit_over_one_retry("initial_limit = 1\nmin_limit = 1\nmax_limit = 1");
    let failing = Arc::new(AtomicU32::new(1));
    let flag = failing.clone();
    let service = policy.layer(service_fn(move |request: u32| {
        let fail = flag.load(Ordering::SeqCst) == 1;
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if fail {
                Err::<u32, BoxError>("down".into())
            } else {
                Ok(request)
            }
        }
    }));

    let first = tokio::spawn(service.clone().oneshot(1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let snapshot = policy.snapshot().concurrency_limit.unwrap();
    assert_eq!((snapshot.in_flight, snapshot.limit), (0, 1));
    failing.store(0, Ordering::SeqCst);
    assert_eq!(service.clone().oneshot(2).await.unwrap(), 2);
    let snapshot = policy.snapshot().concurrency_limit.unwrap();
    assert_eq!((snapshot.in_flight, snapshot.limit), (0, 1));
}

/// A policy with a rate limit and a concurrency limit: a request the concurrency limit
/// sheds gives its rate token back, so callers refused while the upstream is busy do not
/// use up the rate the upstream could serve. A policy without a concurrency limit has
/// nothing to give back from.
#[tokio::test(start_paused = true)]
async fn a_policys_rate_limit_gets_back_the_tokens_of_requests_its_concurrency_limit_sheds() {
    let config = ReliabilityConfig::from_toml(
        r#"
        [policy.upstream.rate_limit]
        rate = 1
        period = "1m"
        burst = 2
        [policy.upstream.concurrency_limit]
        initial_limit = 1
        min_limit = 1
        max_limit = 1
        "#,
    )
    .unwrap();
    let policy = ReliabilityLayer::from_config(&config, "upstream").unwrap();
    let service = ServiceBuilder::new()
        .layer(policy.clone())
        .service(service_fn(|request: u32| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<u32, BoxError>(request)
        }));
    let slow = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    for _ in 0..5 {
        let error = Error::from_box(service.clone().oneshot(2).await.unwrap_err());
        assert_eq!(error.kind(), ErrorKind::ConcurrencyLimited);
    }
    assert_eq!(
        policy.snapshot().rate_limit.unwrap().tokens,
        1,
        "the shed gave theirs back"
    );
    assert_eq!(slow.await.unwrap().unwrap(), 1);
    assert_eq!(service.clone().oneshot(3).await.unwrap(), 3);
    let error = Error::from_box(service.oneshot(4).await.unwrap_err());
    assert_eq!(error.kind(), ErrorKind::RateLimited, "two sent, two spent");
}
