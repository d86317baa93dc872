//! The Redis rate limiter under faults: a server killed and restarted, a blackholed or
//! stalled server (through a proxy that drops or holds traffic), a slow one, and a Cluster
//! node killed mid-run. Every call must end within the timeout; while Redis is down calls
//! take the failure policy at once; decisions come from Redis again soon after it returns.
//!
//! `PRISM_REDIS_RECOVERY_RUNS=<n>` also runs `recovery_time_after_a_kill`, which measures
//! the time from a killed server's return to the first decision served by Redis again.
#![cfg(feature = "redis")]

mod redis_support;

use std::time::{Duration, Instant};

use redis_support::fake;
use redis_support::proxy::{Mode, Proxy};
use redis_support::{redis_cli, Cluster, Server};
use tower_prism_limit::redis::{
    FailurePolicy, LinkState, RedisConfig, RedisRateLimitLayer, RedisSnapshot,
};
use tower_prism_limit::Error;

fn layer(url: &str, timeout: Duration, policy: FailurePolicy) -> RedisRateLimitLayer {
    layer_connecting_within(url, timeout, Duration::from_millis(300), policy)
}

fn layer_connecting_within(
    url: &str,
    timeout: Duration,
    connect_timeout: Duration,
    policy: FailurePolicy,
) -> RedisRateLimitLayer {
    RedisRateLimitLayer::builder(
        RedisConfig::builder(url)
            .rate(100_000)
            .period(Duration::from_secs(1))
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .failure_policy(policy)
            .build()
            .unwrap(),
    )
    .name("faults")
    .build()
    .unwrap()
}

/// How many of `calls` calls, `gap` apart, took at least `slow`.
async fn slow_calls(l: &RedisRateLimitLayer, calls: usize, gap: Duration, slow: Duration) -> usize {
    let mut count = 0;
    for _ in 0..calls {
        let t = Instant::now();
        let _ = l.handle().acquire().await;
        count += usize::from(t.elapsed() >= slow);
        tokio::time::sleep(gap).await;
    }
    count
}

/// Whether a decision was Redis' own: no backend error was counted for it.
async fn served_by_redis(l: &RedisRateLimitLayer) -> bool {
    let before = l.handle().snapshot().backend_errors;
    let _ = l.handle().acquire().await;
    l.handle().snapshot().backend_errors == before
}

/// Calls until one is served by Redis; the time it took. Panics after `limit`.
async fn until_served(l: &RedisRateLimitLayer, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if served_by_redis(l).await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not served by redis again after {limit:?}: {:?}",
            l.handle().snapshot()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn is_unavailable(e: &Error) -> bool {
    matches!(e, Error::Unavailable(_))
}

/// Before the fix the connection manager backed off up to a minute between attempts, so a
/// two-second outage cost about two minutes; now the reconnection waits at most
/// `reconnect_backoff_max` (250 ms by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_is_served_again_soon_after_it_returns() {
    let Some(mut server) = Server::start() else {
        return;
    };
    let l = layer(
        &server.url(),
        Duration::from_millis(20),
        FailurePolicy::FailClosed,
    );
    l.handle().acquire().await.expect("admitted by redis");
    server.kill();
    // A while down, with calls going on, so that the backoff reaches its cap.
    let down_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < down_until {
        let err = l.handle().acquire().await.unwrap_err();
        assert!(is_unavailable(&err), "{err}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(l.handle().snapshot().link, LinkState::Down);
    assert!(server.spawn());
    // The cap is 250 ms; the bound here leaves room for a slow machine.
    let took = until_served(&l, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(3), "recovery took {took:?}");
    let snap = l.handle().snapshot();
    assert_eq!(snap.link, LinkState::Up, "{snap:?}");
    assert!(snap.link_downs >= 1, "{snap:?}");
}

/// Before the fix every call during an outage paid the whole timeout; now only the call
/// that finds the connection broken does, the others get the failure policy at once.
async fn unresponsive_server_costs_one_timeout(mode: Mode) {
    let Some(server) = Server::start() else {
        return;
    };
    let proxy = Proxy::start(server.port).await;
    let timeout = Duration::from_millis(200);
    let closed = layer(&proxy.url(), timeout, FailurePolicy::FailClosed);
    let open = layer(&proxy.url(), timeout, FailurePolicy::FailOpen);
    closed.handle().acquire().await.expect("admitted by redis");
    open.handle().acquire().await.expect("admitted by redis");
    proxy.set(mode);
    let start = Instant::now();
    for _ in 0..50 {
        let t = Instant::now();
        let err = closed.handle().acquire().await.unwrap_err();
        assert!(is_unavailable(&err), "{err}");
        open.handle().acquire().await.expect("fail open admits");
        assert!(
            t.elapsed() < timeout * 4,
            "a call was not bounded: {:?}",
            t.elapsed()
        );
    }
    // Paying the timeout on each call would take 2 x 50 x 200 ms = 20 s.
    let all = start.elapsed();
    assert!(
        all < timeout * 15,
        "calls did not fail fast: {all:?} for 100"
    );
    for l in [&closed, &open] {
        let snap: RedisSnapshot = l.handle().snapshot();
        assert_eq!(snap.link, LinkState::Down, "{snap:?}");
        assert_eq!(snap.backend_errors, 50, "{snap:?}");
    }
    // Traffic flows again: new connections get through and decisions come from Redis.
    proxy.set(Mode::Pass);
    until_served(&closed, Duration::from_secs(10)).await;
    until_served(&open, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_server_costs_one_timeout_then_fails_fast() {
    unresponsive_server_costs_one_timeout(Mode::Drop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_costs_one_timeout_then_fails_fast() {
    unresponsive_server_costs_one_timeout(Mode::Stall).await;
}

/// A server that answers the reconnection but not the script within `timeout`, as one
/// paused for a failover (`CLIENT PAUSE .. WRITE`: `SCRIPT LOAD` is answered, `EVALSHA`
/// waits): before the fix each reconnection made the link `Up` again at once and the next
/// call paid the timeout, so in effect every call did. Now a strike puts the link on
/// probation: one call per reconnection pays it, the wait between reconnections growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_paused_for_writes_costs_one_call_per_reconnection() {
    let Some(server) = Server::start() else {
        return;
    };
    let timeout = Duration::from_millis(100);
    let l = layer(&server.url(), timeout, FailurePolicy::FailOpen);
    l.handle().acquire().await.expect("admitted by redis");
    redis_cli(server.port, &["CLIENT", "PAUSE", "10000", "WRITE"]);
    let start = Instant::now();
    let slow = slow_calls(&l, 60, Duration::from_millis(20), timeout * 9 / 10).await;
    let snap = l.handle().snapshot();
    // About one probe per `reconnect_backoff_max` (250 ms) once the wait has grown: 10 of
    // 60 here; every call paid before the fix. The bound follows a slow machine's clock.
    let bound = 4 + start.elapsed().as_millis() / 250;
    assert!(
        slow as u128 <= bound,
        "{slow} of 60 calls paid the timeout (at most {bound}): {snap:?}"
    );
    assert!(snap.link_downs >= 2, "{snap:?}");
    redis_cli(server.port, &["CLIENT", "UNPAUSE"]);
    until_served(&l, Duration::from_secs(10)).await;
    assert_eq!(l.handle().snapshot().link, LinkState::Up);
}

/// While the first connection attempt runs (here held until `connect_timeout`), only the
/// first call waits for it; before the fix every call did, each its whole timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_during_a_slow_first_connection_fail_fast_after_the_first() {
    let Some(server) = Server::start() else {
        return;
    };
    let proxy = Proxy::start(server.port).await;
    proxy.set(Mode::Stall);
    let timeout = Duration::from_millis(50);
    let l = layer_connecting_within(
        &proxy.url(),
        timeout,
        Duration::from_secs(2),
        FailurePolicy::FailClosed,
    );
    let slow = slow_calls(&l, 20, Duration::from_millis(5), timeout * 9 / 10).await;
    assert_eq!(slow, 1, "{:?}", l.handle().snapshot());
    assert_eq!(l.handle().snapshot().link, LinkState::Down);
}

/// The first call's wait for the connection and its script share one timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_is_bounded_by_one_timeout() {
    let Some(server) = Server::start() else {
        return;
    };
    let proxy = Proxy::start(server.port).await;
    let timeout = Duration::from_millis(200);
    for delay in [40, 60, 90, 120] {
        proxy.set(Mode::Delay(Duration::from_millis(delay)));
        let l = layer_connecting_within(
            &proxy.url(),
            timeout,
            Duration::from_secs(2),
            FailurePolicy::FailOpen,
        );
        let t = Instant::now();
        l.handle().acquire().await.expect("fail open admits");
        let took = t.elapsed();
        assert!(
            took < timeout + Duration::from_millis(40),
            "a first call took {took:?} with a {delay} ms delay"
        );
    }
}

/// A failover behind a stable address (a DNS name, a proxy): the old primary, now a
/// replica, answers `READONLY`. Before the fix the link stayed on it for good; now it
/// reconnects, and reaches the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_primary_answering_readonly_is_left_for_the_new_one() {
    // The demoted server saves the new primary's data: in a directory of its own.
    let dir = std::env::temp_dir().join(format!("prism-redis-demoted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let old_args = vec!["--dir".to_owned(), dir.display().to_string()];
    let (Some(old), Some(new)) = (Server::start_with(old_args), Server::start()) else {
        return;
    };
    let proxy = Proxy::start(old.port).await;
    let l = layer(
        &proxy.url(),
        Duration::from_millis(200),
        FailurePolicy::FailClosed,
    );
    l.handle().acquire().await.expect("admitted by redis");
    redis_cli(old.port, &["REPLICAOF", "127.0.0.1", &new.port.to_string()]);
    proxy.retarget(new.port);
    let took = until_served(&l, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(l.handle().snapshot().link_downs >= 1);
    drop(old);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server slower than the timeout: each call ends within the timeout under the policy.
/// A server slower than usual but within the timeout: decisions still come from Redis and
/// the connection is never dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_is_bounded_by_the_timeout() {
    let Some(server) = Server::start() else {
        return;
    };
    let proxy = Proxy::start(server.port).await;
    let timeout = Duration::from_millis(150);
    let l = layer(&proxy.url(), timeout, FailurePolicy::FailOpen);
    proxy.set(Mode::Delay(Duration::from_millis(20)));
    for _ in 0..10 {
        assert!(served_by_redis(&l).await, "{:?}", l.handle().snapshot());
    }
    assert_eq!(l.handle().snapshot().link_downs, 0);
    proxy.set(Mode::Delay(Duration::from_millis(400)));
    for _ in 0..20 {
        let t = Instant::now();
        l.handle().acquire().await.expect("fail open admits");
        assert!(
            t.elapsed() < timeout * 4,
            "a call was not bounded: {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(l.handle().snapshot().backend_errors >= 20);
    proxy.set(Mode::Pass);
    until_served(&l, Duration::from_secs(10)).await;
}

/// The first call waits for the first connection at most its timeout, even when the
/// server never answers; the calls after it do not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_blackholed_from_the_start_fails_fast_after_the_first_call() {
    let Some(server) = Server::start() else {
        return;
    };
    let proxy = Proxy::start(server.port).await;
    proxy.set(Mode::Drop);
    let timeout = Duration::from_millis(200);
    let l = layer(&proxy.url(), timeout, FailurePolicy::FailClosed);
    let start = Instant::now();
    for _ in 0..20 {
        assert!(is_unavailable(&l.handle().acquire().await.unwrap_err()));
    }
    let all = start.elapsed();
    assert!(all < timeout * 8, "{all:?}");
    proxy.set(Mode::Pass);
    until_served(&l, Duration::from_secs(10)).await;
}

/// A fail-closed layer on `cluster` with calls bounded by `timeout`, and 30 keys (spread
/// over the nodes) each admitted once by Redis.
async fn cluster_layer_in_use(
    cluster: &Cluster,
    timeout: Duration,
    name: &str,
) -> (RedisRateLimitLayer, Vec<String>) {
    let l = RedisRateLimitLayer::builder(
        RedisConfig::builder(cluster.url())
            .cluster(true)
            .rate(100_000)
            .period(Duration::from_secs(1))
            .timeout(timeout)
            .connect_timeout(Duration::from_millis(300))
            .failure_policy(FailurePolicy::FailClosed)
            .build()
            .unwrap(),
    )
    .name(name)
    .build()
    .unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("user-{i}")).collect();
    for k in &keys {
        l.handle().acquire_key(k).await.expect("admitted by redis");
    }
    (l, keys)
}

/// A Cluster node killed mid-run: keys on the other nodes are still decided by Redis, keys
/// on the dead node get the failure policy within the timeout, and once the node is back
/// every key is decided by Redis again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_killed_mid_run_fails_only_its_keys_and_comes_back() {
    // Without full coverage the healthy nodes keep serving their slots.
    let Some(mut cluster) = Cluster::start_with(&["--cluster-require-full-coverage", "no"]) else {
        return;
    };
    let timeout = Duration::from_millis(200);
    let (l, keys) = cluster_layer_in_use(&cluster, timeout, "cl").await;
    let victim = 2;
    let victim_port = cluster.nodes[victim].port;
    // Which keys live on the victim: those whose slot it serves.
    let on_victim: Vec<bool> = keys
        .iter()
        .map(|k| {
            let slot: u16 = redis_cli(
                victim_port,
                &["cluster", "keyslot", &format!("{{prism:cl:{k}}}")],
            )
            .trim()
            .parse()
            .unwrap();
            let owner = redis_cli(victim_port, &["cluster", "nodes"]);
            owner.lines().any(|line| {
                line.contains("myself")
                    && line.split_whitespace().skip(8).any(|range| {
                        let mut ends = range
                            .split('-')
                            .map(|n| n.parse::<u16>().unwrap_or(u16::MAX));
                        let lo = ends.next().unwrap_or(u16::MAX);
                        let hi = ends.next().unwrap_or(lo);
                        (lo..=hi).contains(&slot)
                    })
            })
        })
        .collect();
    assert!(on_victim.iter().any(|v| *v) && on_victim.iter().any(|v| !*v));
    cluster.nodes[victim].kill();
    for round in 0..3 {
        for (k, dead) in keys.iter().zip(&on_victim) {
            let t = Instant::now();
            let r = l.handle().acquire_key(k).await;
            assert!(
                t.elapsed() < timeout * 4,
                "a call was not bounded: {:?}",
                t.elapsed()
            );
            if *dead {
                assert!(is_unavailable(&r.unwrap_err()), "round {round}, key {k}");
            } else {
                r.unwrap_or_else(|e| panic!("round {round}, key {k} on a live node: {e}"));
            }
        }
    }
    // One node of three dead is the cluster client's to handle: the link stays up.
    let snapshot = l.handle().snapshot();
    assert_eq!(
        (snapshot.link, snapshot.link_downs),
        (LinkState::Up, 0),
        "{snapshot:?}"
    );
    assert!(cluster.nodes[victim].spawn());
    let start = Instant::now();
    for k in &keys {
        loop {
            let before = l.handle().snapshot().backend_errors;
            let r = l.handle().acquire_key(k).await;
            if l.handle().snapshot().backend_errors == before {
                r.unwrap();
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "key {k} not served again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every Cluster node killed: the link goes down after a few calls (instead of each call
/// making the cluster client try every dead node again), calls then take the failure
/// policy at once, and once the nodes are back the link reconnects and Redis decides again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_every_node_dead_takes_the_link_down_until_it_returns() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let timeout = Duration::from_millis(100);
    let (l, keys) = cluster_layer_in_use(&cluster, timeout, "cl-all").await;
    for node in &mut cluster.nodes {
        node.kill();
    }
    let start = Instant::now();
    let mut calls = 0;
    while l.handle().snapshot().link != LinkState::Down {
        let t = Instant::now();
        let r = l.handle().acquire_key(&keys[calls % keys.len()]).await;
        assert!(
            t.elapsed() < timeout * 4,
            "a call was not bounded: {:?}",
            t.elapsed()
        );
        assert!(is_unavailable(&r.unwrap_err()));
        calls += 1;
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still {:?} after {calls} calls",
            l.handle().snapshot()
        );
    }
    assert!(
        calls >= 5,
        "down after {calls} calls: one dead node's keys would do that"
    );
    // Down: calls are refused without asking the cluster (their error says so).
    for k in &keys {
        let e = l.handle().acquire_key(k).await.unwrap_err();
        assert!(e.to_string().contains("unreachable"), "{e}");
    }
    assert_eq!(l.handle().snapshot().link_downs, 1);
    for node in &mut cluster.nodes {
        assert!(node.spawn());
    }
    until_served(&l, Duration::from_secs(20)).await;
    assert_eq!(l.handle().snapshot().link, LinkState::Up);
}

/// Recovery time after a kill: the time from the server's return (accepting connections)
/// to the first decision served by Redis, with a call every millisecond and a 20 ms
/// timeout, as in the issue. Runs only with `PRISM_REDIS_RECOVERY_RUNS=<n>` set (outage
/// `PRISM_REDIS_OUTAGE_MS`, default 2300, plus a spread over the backoff cap); prints
/// every run and the median.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_time_after_a_kill() {
    let Some(runs) = std::env::var("PRISM_REDIS_RECOVERY_RUNS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return;
    };
    let outage: u64 = std::env::var("PRISM_REDIS_OUTAGE_MS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2300);
    let Some(mut server) = Server::start() else {
        return;
    };
    let l = layer(
        &server.url(),
        Duration::from_millis(20),
        FailurePolicy::FailClosed,
    );
    let mut times = Vec::new();
    for run in 0..runs {
        until_served(&l, Duration::from_secs(30)).await;
        server.kill();
        // Outages spread over one backoff cap (250 ms), so the server returns at every
        // phase of the reconnection attempts rather than at one.
        let spread = (run as u64 * 250) / runs as u64;
        let back = Instant::now() + Duration::from_millis(outage + spread);
        while Instant::now() < back {
            let _ = l.handle().acquire().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(server.spawn());
        let took = until_served(&l, Duration::from_secs(300)).await;
        println!("run {run}: served by redis {took:?} after its return");
        times.push(took);
    }
    times.sort();
    println!(
        "recovery after a {outage}-{} ms outage, {runs} runs: median {:?}, min {:?}, max {:?}",
        outage + 250,
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}

/// A limiter used from two runtimes in turn (a test suite, an application restarting its
/// runtime): the reconnection task of the first dies with it, and the second runtime's
/// calls start a new one instead of waiting forever for the dead one.
#[test]
fn a_limiter_outliving_its_runtime_reconnects_on_the_next_one() {
    let Some(mut server) = Server::start() else {
        return;
    };
    let l = layer(
        &server.url(),
        Duration::from_millis(50),
        FailurePolicy::FailClosed,
    );
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        l.handle().acquire().await.expect("admitted by redis");
        server.kill();
        assert!(l.handle().acquire().await.is_err());
        // The reconnection task is running (attempting or backing off) when the runtime goes.
        tokio::time::sleep(Duration::from_millis(30)).await;
    });
    drop(first);
    assert!(server.spawn());
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        until_served(&l, Duration::from_secs(10)).await;
    });
}

/// A server that answers `SCRIPT LOAD` with another digest (a proxy or a look-alike):
/// before the fix redis-rs' debug assertion panicked the reconnection task on every
/// attempt, and the link stayed connecting for good. Now the attempt fails with an error
/// and the failure policy decides at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_script_digest_is_an_error_not_a_panic() {
    let url = fake::start(fake::Replies {
        script_load: Some("$40\r\n0000000000000000000000000000000000000000\r\n"),
        evalsha: "*2\r\n:1\r\n:0\r\n",
    })
    .await;
    let l = layer(&url, Duration::from_millis(100), FailurePolicy::FailClosed);
    for _ in 0..5 {
        let err = l.handle().acquire().await.unwrap_err();
        assert!(is_unavailable(&err), "{err}");
    }
    let snap = l.handle().snapshot();
    assert_eq!(snap.link, LinkState::Down, "{snap:?}");
}

/// Answers the script cannot give are backend errors (the failure policy decides), not
/// rejections with a made-up wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_script_answers_are_backend_errors() {
    for evalsha in ["*2\r\n:7\r\n:0\r\n", "*2\r\n:0\r\n:-5\r\n"] {
        let url = fake::start(fake::Replies {
            script_load: None,
            evalsha,
        })
        .await;
        let l = layer(&url, Duration::from_millis(200), FailurePolicy::FailClosed);
        let _ = l.handle().acquire().await;
        let snap = l.handle().snapshot();
        assert_eq!(snap.rejected, 0, "{evalsha:?}: {snap:?}");
        assert_eq!(snap.backend_errors, 1, "{evalsha:?}: {snap:?}");
    }
}

/// A server whose every answer breaks the connection (garbage for `EVALSHA`) answers the
/// reconnection and `SCRIPT LOAD` fine: a connection lost before it answered a call is a
/// strike, so the reconnections back off. It was remade for nearly every call (315 in a
/// second of 357 calls), with no backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_breaking_every_connection_is_reconnected_to_with_backoff() {
    let url = fake::start(fake::Replies {
        script_load: None,
        evalsha: "!garbage\r\n",
    })
    .await;
    let l = layer(&url, Duration::from_millis(100), FailurePolicy::FailOpen);
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_secs(1) {
        let _ = l.handle().acquire().await;
        calls += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let snap = l.handle().snapshot();
    assert!(
        snap.link_downs <= 20,
        "{} reconnections for {calls} calls: {snap:?}",
        snap.link_downs
    );
}

/// Polled outside a tokio runtime, a call is an error, not a panic.
#[test]
fn a_call_outside_a_runtime_is_an_error() {
    let l = layer(
        "redis://127.0.0.1:1/",
        Duration::from_millis(50),
        FailurePolicy::FailClosed,
    );
    let err = futures_lite_block_on(l.handle().acquire()).unwrap_err();
    assert!(is_unavailable(&err), "{err}");
}

/// Polls `f` to completion on this thread, with no runtime around it.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

/// A connection the server closed while idle (Redis' `timeout`, a proxy's idle timeout,
/// `CLIENT KILL`) is made again and the call asked again, within its timeout: no outage,
/// no failure policy. The call failed with a broken pipe and took the link down, so with
/// `fail_closed` the first request after every idle spell was refused, Redis healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closed_is_made_again_not_an_outage() {
    let Some(server) = Server::start() else {
        return;
    };
    let layer = RedisRateLimitLayer::builder(
        RedisConfig::builder(server.url())
            .rate(1000)
            .timeout(Duration::from_millis(500))
            .failure_policy(FailurePolicy::FailClosed)
            .build()
            .unwrap(),
    )
    .name("idle")
    .build()
    .unwrap();
    let handle = layer.handle();
    handle.acquire().await.unwrap();
    for round in 0..3 {
        redis_cli(server.port, &["CLIENT", "KILL", "TYPE", "normal"]);
        assert_eq!(handle.acquire().await, Ok(()), "after kill {round}");
    }
    let snapshot = handle.snapshot();
    assert_eq!(
        (snapshot.backend_errors, snapshot.link_downs),
        (0, 0),
        "{snapshot:?}"
    );
    assert_eq!(snapshot.admitted, 4);
}
