//! Integration tests of the Redis rate limiter against real `redis-server` processes.
#![cfg(feature = "redis")]

mod redis_support;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_support::{redis_cli, Cluster, Server};

use tower::{service_fn, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_limit::redis::{FailurePolicy, RedisConfig, RedisRateLimitLayer};
use tower_prism_limit::Error;

fn layer(url: &str, policy: FailurePolicy) -> RedisRateLimitLayer {
    RedisRateLimitLayer::builder(
        RedisConfig::builder(url)
            .rate(10)
            .period(Duration::from_secs(1))
            .burst(10)
            .timeout(Duration::from_millis(100))
            .failure_policy(policy)
            .build()
            .unwrap(),
    )
    .name("t")
    .build()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_one_limit() {
    let Some(server) = Server::start() else {
        return;
    };
    let layers: Vec<_> = (0..3)
        .map(|_| layer(&server.url(), FailurePolicy::FailClosed))
        .collect();
    let start = Instant::now();
    let mut admitted = 0u64;
    let mut rated = 0u64;
    for i in 0..90 {
        match layers[i % 3].handle().acquire().await {
            Ok(()) => admitted += 1,
            Err(e) => match Some(&e) {
                Some(Error::RateLimited { retry_after }) => {
                    assert!(*retry_after <= Duration::from_millis(100));
                    rated += 1;
                }
                _ => panic!("unexpected error {e}"),
            },
        }
    }
    let bound = 10 + (start.elapsed().as_secs_f64() * 10.0).ceil() as u64;
    assert!(admitted >= 10, "burst not admitted: {admitted}");
    assert!(admitted <= bound, "admitted {admitted} > bound {bound}");
    assert_eq!(admitted + rated, 90);
    let total: u64 = layers.iter().map(|l| l.handle().snapshot().admitted).sum();
    assert_eq!(total, admitted);
}

#[tokio::test]
async fn bad_url_is_a_config_error() {
    let err = RedisConfig::builder("http://nope").build().unwrap_err();
    assert_eq!(err.field(), "url", "{err}");
    let err = RedisConfig::builder("redis://127.0.0.1:1/")
        .rate(0)
        .period(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "rate", "{err}");
    let err = RedisConfig::builder("redis://127.0.0.1:1/")
        .rate(2_000_000)
        .period(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "rate", "{err}");
    // A config that skipped validation is checked again by the layer.
    let mut unchecked = RedisConfig::new("redis://127.0.0.1:1/", 10, Duration::from_secs(1));
    unchecked.rate = 0;
    let err = RedisRateLimitLayer::from_config(&unchecked).unwrap_err();
    assert_eq!(err.field(), "rate", "{err}");
}

async fn outage(policy: FailurePolicy) -> (u64, Vec<Result<(), String>>) {
    let Some(mut server) = Server::start() else {
        return (0, vec![]);
    };
    let l = layer(&server.url(), policy);
    l.handle()
        .acquire()
        .await
        .expect("first request admitted by redis");
    server.kill();
    let mut during = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = l.handle().acquire().await;
        assert!(t.elapsed() < Duration::from_millis(400), "a call hung");
        during.push(r.map_err(|e| {
            if let Some(Error::Unavailable(_)) = Some(&e) {
                "unavailable".to_string()
            } else if let Some(Error::RateLimited { .. }) = Some(&e) {
                "rated".to_string()
            } else {
                format!("other: {e}")
            }
        }));
    }
    let errors = l.handle().snapshot().backend_errors;
    assert!(errors >= 5, "backend errors counted: {errors}");
    // Recovery: restart on the same port; decisions come from Redis again.
    assert!(server.spawn());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = l.handle().snapshot().backend_errors;
        let _ = l.handle().acquire().await;
        if l.handle().snapshot().backend_errors == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover after redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (errors, during)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fail_open_admits_and_recovers() {
    let (_, during) = outage(FailurePolicy::FailOpen).await;
    assert!(during.iter().all(|r| r.is_ok()), "{during:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fail_closed_rejects_typed_and_recovers() {
    let (_, during) = outage(FailurePolicy::FailClosed).await;
    assert!(
        during
            .iter()
            .all(|r| r.as_ref().err().map(String::as_str) == Some("unavailable")),
        "{during:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_local_fallback_uses_a_share_of_the_limit() {
    // rate 10, burst 10, 5 instances: the fallback bucket holds 2 tokens.
    let (_, during) = outage(FailurePolicy::LocalFallback { instances: 5 }).await;
    if during.is_empty() {
        return;
    }
    let ok = during.iter().filter(|r| r.is_ok()).count();
    assert!((2..=3).contains(&ok), "{during:?}");
    assert!(during
        .iter()
        .all(|r| r.is_ok() || r.as_ref().err().map(String::as_str) == Some("rated")));
}

/// Child-process half of `second_process_shares_the_limit`: spends the burst it can get and
/// prints how many it got.
#[tokio::test]
async fn child_process_part() {
    let Ok(url) = std::env::var("PRISM_REDIS_CHILD_URL") else {
        return;
    };
    let l = layer(&url, FailurePolicy::FailClosed);
    let mut ok = 0;
    for _ in 0..30 {
        if l.handle().acquire().await.is_ok() {
            ok += 1;
        }
    }
    println!("CHILD_ADMITTED={ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_shares_the_limit() {
    let Some(server) = Server::start() else {
        return;
    };
    let start = Instant::now();
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "child_process_part",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PRISM_REDIS_CHILD_URL", server.url())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let l = layer(&server.url(), FailurePolicy::FailClosed);
    let mut ours = 0u64;
    for _ in 0..30 {
        if l.handle().acquire().await.is_ok() {
            ours += 1;
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let theirs: u64 = text
        .lines()
        .find_map(|l| l.split("CHILD_ADMITTED=").nth(1))
        .unwrap_or_else(|| panic!("child printed no count: {text}"))
        .trim()
        .parse()
        .unwrap();
    let bound = 10 + (start.elapsed().as_secs_f64() * 10.0).ceil() as u64;
    assert!(ours + theirs >= 10, "{ours} + {theirs}");
    assert!(ours + theirs <= bound, "{ours} + {theirs} > {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_allotment_stays_within_its_bound() {
    let Some(server) = Server::start() else {
        return;
    };
    let n = 4u64;
    let instances = 3u64;
    let layers: Vec<_> = (0..instances)
        .map(|_| {
            RedisRateLimitLayer::builder(
                RedisConfig::builder(server.url())
                    .rate(10)
                    .period(Duration::from_secs(1))
                    .burst(10)
                    .pre_allot(n as u32)
                    .build()
                    .unwrap(),
            )
            .name("pre")
            .build()
            .unwrap()
        })
        .collect();
    let start = Instant::now();
    let mut admitted = 0u64;
    for i in 0..90 {
        if layers[i % 3].handle().acquire().await.is_ok() {
            admitted += 1;
        }
    }
    let bound = 10 + (start.elapsed().as_secs_f64() * 10.0).ceil() as u64 + instances * (n - 1);
    // Batches of 4 from a burst of 10: two whole batches fit at once.
    assert!(admitted >= 8, "{admitted}");
    assert!(admitted <= bound, "admitted {admitted} > bound {bound}");
    let err = RedisConfig::builder(server.url())
        .burst(3)
        .pre_allot(4)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "pre_allot", "{err}");
}

/// Requests that find an instance's pre-allotted stock empty at once each take a batch
/// from Redis; the instance keeps at most one batch less the token used (`n - 1`), not
/// one per request (ten concurrent refills of 10 kept 90 tokens, past the documented
/// bound). Counted with Redis gone: what the instance admits then is its stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refills_keep_at_most_one_batch() {
    let Some(mut server) = Server::start() else {
        return;
    };
    let n = 10;
    let l = RedisRateLimitLayer::builder(
        RedisConfig::builder(server.url())
            .rate(1_000)
            .period(Duration::from_secs(1))
            .burst(1_000)
            .pre_allot(n)
            .failure_policy(FailurePolicy::FailClosed)
            .build()
            .unwrap(),
    )
    .name("refills")
    .build()
    .unwrap();
    for _ in 0..n {
        l.handle().acquire().await.unwrap(); // one batch, taken whole
    }
    let refills: Vec<_> = (0..10)
        .map(|_| {
            let l = l.handle().clone();
            tokio::spawn(async move { l.acquire().await })
        })
        .collect();
    for refill in refills {
        refill.await.unwrap().unwrap();
    }
    server.kill();
    let mut from_stock = 0;
    while l.handle().acquire().await.is_ok() {
        from_stock += 1;
        assert!(from_stock <= 100, "no end to the stock");
    }
    assert!(
        from_stock < n,
        "{from_stock} tokens kept, at most {}",
        n - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_has_its_own_bucket_under_the_prefix() {
    let Some(server) = Server::start() else {
        return;
    };
    let cfg: RedisConfig = toml::from_str(&format!(
        "url = '{}'\nrate = 2\nperiod = '1s'\nburst = 2\nprefix = 'app'\ntimeout = '200ms'",
        server.url()
    ))
    .unwrap();
    let layer = RedisRateLimitLayer::builder(cfg.clone())
        .name("per_key")
        .build()
        .unwrap()
        .key_fn(|req: &(&'static str, u32)| req.0);
    let mut svc = layer.layer(service_fn(|req: (&'static str, u32)| async move {
        Ok::<_, std::convert::Infallible>(req.1)
    }));
    let mut results = Vec::new();
    for (key, n) in [
        ("alice", 1),
        ("alice", 2),
        ("alice", 3),
        ("bob", 4),
        ("bob", 5),
    ] {
        let r = svc.ready().await.unwrap().call((key, n)).await;
        results.push(r.map_err(|e| e.downcast_ref::<Error>().cloned()));
    }
    assert_eq!(results[0], Ok(1));
    assert_eq!(results[1], Ok(2));
    assert!(
        matches!(results[2], Err(Some(Error::RateLimited { .. }))),
        "alice spent her burst: {results:?}"
    );
    assert_eq!(results[3], Ok(4), "bob is untouched by alice");
    assert_eq!(results[4], Ok(5));
    assert!(layer.handle().acquire_key("carol").await.is_ok());
    // One Redis key per key, under the prefix, hash-tagged, with an expiry.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "{app:per_key:alice}",
            "{app:per_key:bob}",
            "{app:per_key:carol}"
        ]
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("{app:per_key:alice}")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1..=1_002).contains(&ttl),
        "expires once full again: {ttl} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_pre_allotment_and_fallback_are_per_key() {
    let Some(mut server) = Server::start() else {
        return;
    };
    let layer = RedisRateLimitLayer::builder(
        RedisConfig::builder(server.url())
            .rate(4)
            .period(Duration::from_secs(2))
            .burst(4)
            .pre_allot(2)
            .timeout(Duration::from_millis(100))
            .failure_policy(FailurePolicy::LocalFallback { instances: 2 })
            .build()
            .unwrap(),
    )
    .name("kp")
    .build()
    .unwrap();
    // Each key: a burst of 4 in batches of 2 -> 4 admitted, then refused.
    for key in ["a", "b"] {
        let ok = futures_ok(&layer, key, 6).await;
        assert_eq!(ok, 4, "key {key}");
    }
    server.kill();
    // Fallback: a bucket of burst 4/2 = 2 per key, in this process.
    for key in ["c", "d"] {
        let ok = futures_ok(&layer, key, 4).await;
        assert_eq!(ok, 2, "fallback for key {key}");
    }
}

async fn futures_ok(layer: &RedisRateLimitLayer, key: &str, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if layer.handle().acquire_key(key).await.is_ok() {
            ok += 1;
        }
    }
    ok
}

#[test]
fn config_errors_name_the_field() {
    let err =
        RedisRateLimitLayer::builder(RedisConfig::new("http://nope", 10, Duration::from_secs(1)))
            .name("x")
            .build()
            .unwrap_err();
    assert_eq!(err.field(), "url");
}

/// Keyed buckets spread over a three-node cluster's slots; each keeps its limit across two
/// instances. A client not told it talks to a cluster gets `MOVED` for keys on other nodes:
/// backend errors under its failure policy, never silent over-admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_holds_each_keyed_limit_across_its_nodes() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let build = |cluster_mode: bool| {
        let mut cfg = RedisConfig::new(cluster.url(), 1, Duration::from_secs(3600));
        cfg.burst = Some(3);
        cfg.cluster = cluster_mode;
        cfg.timeout = Duration::from_secs(2);
        RedisRateLimitLayer::builder(cfg.clone())
            .name("c")
            .build()
            .unwrap()
    };
    let (a, b) = (build(true), build(true));
    for key in 0..24 {
        let mut admitted = 0;
        for i in 0..8 {
            let layer = if i % 2 == 0 { &a } else { &b };
            match layer.handle().acquire_key(format!("user-{key}")).await {
                Ok(()) => admitted += 1,
                Err(e) => assert!(
                    matches!(Some(&e), Some(Error::RateLimited { .. })),
                    "key {key}: {e}"
                ),
            }
        }
        assert_eq!(
            admitted, 3,
            "key {key}: the burst, once, across both instances"
        );
    }
    assert_eq!(
        a.handle().snapshot().backend_errors + b.handle().snapshot().backend_errors,
        0
    );
    // Every node holds some of the buckets.
    for node in &cluster.nodes {
        let keys: u64 = redis_cli(node.port, &["dbsize"]).trim().parse().unwrap();
        assert!(keys > 0, "node {} holds no bucket", node.port);
    }

    let single = build(false);
    for key in 0..24 {
        let _ = single.handle().acquire_key(format!("other-{key}")).await;
    }
    let snap = single.handle().snapshot();
    assert!(snap.backend_errors > 0, "{snap:?}");
    assert_eq!(snap.admitted + snap.backend_errors, 24, "{snap:?}");
}

/// A cluster seed that does not answer: every decision follows the failure policy within
/// the timeout (no hang, no panic), as for a single server.
#[tokio::test]
async fn an_unreachable_cluster_follows_the_failure_policy() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // bound and dropped: nothing listens there now
    let build = |policy| {
        RedisRateLimitLayer::builder(
            RedisConfig::builder(format!("redis://127.0.0.1:{port}/"))
                .cluster(true)
                .timeout(Duration::from_millis(100))
                .failure_policy(policy)
                .build()
                .unwrap(),
        )
        .name("down")
        .build()
        .unwrap()
    };
    let closed = build(FailurePolicy::FailClosed);
    let open = build(FailurePolicy::FailOpen);
    for _ in 0..3 {
        let t = Instant::now();
        let err = closed.handle().acquire_key("k").await.unwrap_err();
        assert!(matches!(Some(&err), Some(Error::Unavailable(_))), "{err}");
        open.handle().acquire_key("k").await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "a call hung");
    }
    assert!(closed.handle().snapshot().backend_errors >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_from_redis_is_capped_like_the_local_limiters() {
    let Some(server) = Server::start() else {
        return;
    };
    // one token a year: Redis' answer for the second call is a wait of about a year
    let l = RedisRateLimitLayer::builder(
        RedisConfig::builder(server.url())
            .rate(1)
            .period(Duration::from_secs(365 * 24 * 3600))
            .burst(1)
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap(),
    )
    .name("cap")
    .build()
    .unwrap();
    l.handle().acquire().await.expect("the burst admits one");
    let err = l.handle().acquire().await.unwrap_err();
    match Some(&err) {
        Some(Error::RateLimited { retry_after }) => assert_eq!(
            *retry_after,
            tower_prism_limit::rate::RateLimitConfig::MAX_RETRY_AFTER
        ),
        _ => panic!("unexpected error {err}"),
    }
}

/// A bucket key holding what the script never writes (another program's value, a type
/// other than a string, a time far ahead) is a full bucket or an empty one, never an error
/// for every call of that key (which the failure policy turned into no limit at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_key_holding_garbage_is_overwritten_not_an_error() {
    let Some(server) = Server::start() else {
        return;
    };
    let cfg: RedisConfig = toml::from_str(&format!(
        "url = '{}'\nrate = 2\nperiod = '1s'\nburst = 2\nprefix = 'app'\ntimeout = '200ms'\n\
         failure_policy = 'fail_closed'",
        server.url()
    ))
    .unwrap();
    let layer = RedisRateLimitLayer::builder(cfg).name("g").build().unwrap();
    let handle = layer.handle();
    for (key, garbage) in [
        ("text", &["SET", "{app:g:text}", "not a number"][..]),
        ("nan", &["SET", "{app:g:nan}", "nan"]),
        ("list", &["RPUSH", "{app:g:list}", "1"]),
    ] {
        redis_cli(server.port, garbage);
        for call in 0..2 {
            assert_eq!(handle.acquire_key(key).await, Ok(()), "{key}: call {call}");
        }
        assert!(
            matches!(
                handle.acquire_key(key).await,
                Err(Error::RateLimited { .. })
            ),
            "{key}: the burst is spent"
        );
    }
    // a time centuries ahead (no expiry): an empty bucket, refilling at the rate
    redis_cli(server.port, &["SET", "{app:g:far}", "1e30"]);
    match handle.acquire_key("far").await {
        Err(Error::RateLimited { retry_after }) => {
            assert!(retry_after <= Duration::from_millis(500), "{retry_after:?}")
        }
        other => panic!("far: {other:?}"),
    }
    assert_eq!(handle.snapshot().backend_errors, 0);
}

/// A batch larger than what is left takes what is left: a burst that is not a multiple of
/// `pre_allot` is admitted whole (a burst of 4 in batches of 3 admitted 3), and a key past
/// `max_keys` asks for one token at a time rather than spend a batch it cannot keep (it
/// got 1 / `pre_allot` of its limit, for good, once `max_keys` keys held stock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_allotment_admits_every_token_of_a_burst() {
    let Some(server) = Server::start() else {
        return;
    };
    let limit = |name: &str, pre_allot: u32, max_keys: usize| {
        RedisRateLimitLayer::builder(
            RedisConfig::builder(server.url())
                .rate(4)
                .period(Duration::from_secs(60))
                .burst(4)
                .pre_allot(pre_allot)
                .max_keys(max_keys)
                .build()
                .unwrap(),
        )
        .name(name)
        .build()
        .unwrap()
    };
    let admitted = |results: Vec<Result<(), Error>>| results.iter().filter(|r| r.is_ok()).count();

    let uneven = limit("uneven", 3, 10);
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(uneven.handle().acquire().await);
    }
    assert_eq!(admitted(results), 4, "the whole burst, no more");

    let capped = limit("capped", 2, 1);
    capped.handle().acquire_key("a").await.unwrap(); // `a` keeps a token: the map is full
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(capped.handle().acquire_key("b").await);
    }
    assert_eq!(admitted(results), 4, "key b's whole burst");
}
