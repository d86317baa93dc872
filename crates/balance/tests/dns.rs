//! DNS discovery: the balancer's endpoints follow the answers of a resolver the test controls.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower::util::BoxCloneSyncService;
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_prism_balance::{
    Balance, BalanceConfig, DnsConfig, DnsDiscovery, Error, Resolve, MAX_ENDPOINTS,
};

const INTERVAL: Duration = Duration::from_secs(5);

/// What the test resolver answers next.
#[derive(Clone)]
enum Answer {
    Addrs(Vec<SocketAddr>),
    Fail,
    Hang,
    Panic,
}

/// A resolver the test controls; counts its calls and the hosts it was asked for.
#[derive(Clone)]
struct TestResolver {
    answer: Arc<Mutex<Answer>>,
    calls: Arc<AtomicUsize>,
    hosts: Arc<Mutex<Vec<String>>>,
}

impl TestResolver {
    fn new(answer: Answer) -> Self {
        TestResolver {
            answer: Arc::new(Mutex::new(answer)),
            calls: Arc::default(),
            hosts: Arc::default(),
        }
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Resolve for TestResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, BoxError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.hosts.lock().unwrap().push(host.to_owned());
        let answer = self.answer.lock().unwrap().clone();
        match answer {
            Answer::Addrs(addrs) => Ok(addrs
                .into_iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect()),
            Answer::Fail => Err("SERVFAIL".into()),
            Answer::Hang => std::future::pending().await,
            Answer::Panic => panic!("resolver bug"),
        }
    }
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 80))
}

fn addrs(ids: &[u8]) -> Vec<SocketAddr> {
    ids.iter().map(|&i| addr(i)).collect()
}

type Endpoint = BoxCloneSyncService<u32, SocketAddr, Infallible>;

/// An endpoint that answers its own address after `delay`.
fn endpoint(delay: Duration) -> impl Fn(SocketAddr) -> Endpoint + Send + Sync + 'static {
    move |addr| {
        BoxCloneSyncService::new(service_fn(move |_: u32| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(addr)
        }))
    }
}

fn balancer() -> Balance<SocketAddr, Endpoint, u32> {
    Balance::builder()
        .name("dns-test")
        .config(BalanceConfig::default())
        .build()
        .unwrap()
}

fn sorted_keys(b: &Balance<SocketAddr, Endpoint, u32>) -> Vec<SocketAddr> {
    let mut keys = b.handle().keys();
    keys.sort();
    keys
}

fn config() -> DnsConfig {
    DnsConfig::builder()
        .host("backend.test")
        .port(80)
        .interval(INTERVAL)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// Waits until just after the refresh task's next round (rounds are `INTERVAL` apart; a
/// test that wakes at the same instant as the task could run before or after it).
async fn next_round() {
    tokio::time::sleep(INTERVAL + Duration::from_millis(10)).await;
}

/// Lets the refresh task run its round for the current instant.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn endpoints_follow_the_answers() {
    let resolver = TestResolver::new(Answer::Addrs(addrs(&[1, 2])));
    let b = balancer();
    let dns = DnsDiscovery::new(config(), endpoint(Duration::ZERO))
        .resolver(resolver.clone())
        .spawn(b.handle())
        .unwrap();
    assert!(dns.resolved().await);
    assert_eq!(sorted_keys(&b), addrs(&[1, 2]));
    assert_eq!(dns.snapshot().addresses, addrs(&[1, 2]));
    assert_eq!(resolver.hosts.lock().unwrap()[0], "backend.test");

    // one address goes, another comes: applied at the next interval, not before
    resolver.answer(Answer::Addrs(addrs(&[2, 3, 3])));
    tokio::time::sleep(INTERVAL - Duration::from_millis(10)).await;
    assert_eq!(sorted_keys(&b), addrs(&[1, 2]));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(sorted_keys(&b), addrs(&[2, 3]));
    let snap = dns.snapshot();
    assert_eq!(snap.addresses, addrs(&[2, 3]));
    assert_eq!(snap.resolutions, 2);
    assert_eq!(snap.failures, 0);

    // and the balancer sends calls to the new set only
    let mut b = b;
    for _ in 0..10 {
        let answered = b.ready().await.unwrap().call(0).await.unwrap();
        assert!(addrs(&[2, 3]).contains(&answered), "{answered}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_keeps_the_last_good_set() {
    let resolver = TestResolver::new(Answer::Addrs(addrs(&[1, 2])));
    let b = balancer();
    let dns = DnsDiscovery::new(config(), endpoint(Duration::ZERO))
        .resolver(resolver.clone())
        .spawn(b.handle())
        .unwrap();
    assert!(dns.resolved().await);

    for (round, answer) in [
        Answer::Fail,
        Answer::Addrs(vec![]),
        Answer::Hang,
        Answer::Panic,
    ]
    .into_iter()
    .enumerate()
    {
        resolver.answer(answer);
        // a hanging resolution ends at the 1s timeout
        tokio::time::sleep(INTERVAL + Duration::from_secs(1) + Duration::from_millis(10)).await;
        assert_eq!(sorted_keys(&b), addrs(&[1, 2]), "round {round}");
        let snap = dns.snapshot();
        assert_eq!(snap.addresses, addrs(&[1, 2]), "round {round}");
        assert_eq!(
            snap.consecutive_failures as usize,
            round + 1,
            "round {round}"
        );
        assert!(snap.last_error.is_some(), "round {round}");
    }
    let snap = dns.snapshot();
    assert_eq!(snap.failures, 4);
    assert_eq!(snap.resolutions, 1);
    assert!(snap.last_error.unwrap().contains("panicked"));

    // the task is still there: the next good answer is applied
    resolver.answer(Answer::Addrs(addrs(&[3])));
    dns.refresh();
    settle().await;
    assert_eq!(sorted_keys(&b), addrs(&[3]));
    let snap = dns.snapshot();
    assert_eq!(snap.consecutive_failures, 0);
    assert_eq!(snap.last_error, None);
}

#[tokio::test(start_paused = true)]
async fn a_failing_first_resolution_leaves_the_balancer_empty_and_retries() {
    let resolver = TestResolver::new(Answer::Fail);
    let b = balancer();
    let dns = DnsDiscovery::new(config(), endpoint(Duration::ZERO))
        .resolver(resolver.clone())
        .spawn(b.handle())
        .unwrap();
    settle().await;
    assert!(b.handle().is_empty());
    assert_eq!(dns.snapshot().failures, 1);
    let mut calling = b.clone();
    let err = calling.ready().await.unwrap().call(0).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::NoHealthyEndpoint { endpoints: 0 })
    ));
    resolver.answer(Answer::Addrs(addrs(&[1])));
    next_round().await;
    assert_eq!(sorted_keys(&b), addrs(&[1]));
}

#[tokio::test(start_paused = true)]
async fn in_flight_requests_to_a_removed_endpoint_complete() {
    let resolver = TestResolver::new(Answer::Addrs(addrs(&[1])));
    let mut b = balancer();
    let dns = DnsDiscovery::new(config(), endpoint(Duration::from_secs(30)))
        .resolver(resolver.clone())
        .spawn(b.handle())
        .unwrap();
    assert!(dns.resolved().await);
    let call = b.ready().await.unwrap().call(0);
    let call = tokio::spawn(call);
    settle().await;
    assert_eq!(b.handle().snapshot().endpoints[0].in_flight, 1);

    resolver.answer(Answer::Addrs(addrs(&[2])));
    next_round().await;
    assert_eq!(sorted_keys(&b), addrs(&[2]));
    assert!(!call.is_finished());

    // the call to the removed endpoint still answers, from the removed endpoint
    let answered = call.await.unwrap().unwrap();
    assert_eq!(answered, addr(1));
    assert!(b
        .handle()
        .snapshot()
        .endpoints
        .iter()
        .all(|e| e.in_flight == 0));
}

#[tokio::test(start_paused = true)]
async fn endpoints_added_by_hand_are_left_alone() {
    let resolver = TestResolver::new(Answer::Addrs(addrs(&[1, 9])));
    let b = balancer();
    let by_hand = endpoint(Duration::ZERO)(addr(9));
    b.handle().add(addr(9), by_hand).unwrap();
    let dns = DnsDiscovery::new(config(), endpoint(Duration::ZERO))
        .resolver(resolver.clone())
        .spawn(b.handle())
        .unwrap();
    assert!(dns.resolved().await);
    assert_eq!(dns.snapshot().addresses, addrs(&[1]));
    let slot_of_9 = |b: &Balance<SocketAddr, Endpoint, u32>| {
        b.handle()
            .snapshot()
            .endpoints
            .iter()
            .find(|e| e.key == addr(9))
            .map(|e| e.slot)
    };
    // not replaced: it kept the first slot it took
    assert_eq!(slot_of_9(&b), Some(0));

    // DNS stops answering it: it stays
    resolver.answer(Answer::Addrs(addrs(&[1])));
    next_round().await;
    assert_eq!(sorted_keys(&b), addrs(&[1, 9]));

    // an endpoint DNS added and the user removed comes back while DNS answers it
    assert!(b.handle().remove(&addr(1)));
    next_round().await;
    assert_eq!(sorted_keys(&b), addrs(&[1, 9]));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_endpoint_maker_skips_that_address() {
    let resolver = TestResolver::new(Answer::Addrs(addrs(&[1, 2])));
    let b = balancer();
    let make = endpoint(Duration::ZERO);
    let dns = DnsDiscovery::new(config(), move |a: SocketAddr| {
        assert_ne!(a, addr(1), "cannot connect");
        make(a)
    })
    .resolver(resolver.clone())
    .spawn(b.handle())
    .unwrap();
    assert!(dns.resolved().await);
    assert_eq!(sorted_keys(&b), addrs(&[2]));
    assert_eq!(dns.snapshot().addresses, addrs(&[2]));
    // and the task goes on
    resolver.answer(Answer::Addrs(addrs(&[2, 3])));
    next_round().await;
    assert_eq!(sorted_keys(&b), addrs(&[2, 3]));
}

#[tokio::test(start_paused = true)]
async fn reconfigure_resolves_the_new_host_at_once() {
    let resolver = TestResolver::new(Answer::Addrs(addrs(&[1])));
    let b = balancer();
    let dns = DnsDiscovery::new(config(), endpoint(Duration::ZERO))
        .resolver(resolver.clone())
        .spawn(b.handle())
        .unwrap();
    assert!(dns.resolved().await);
    assert_eq!(dns.name(), "dns-test");

    let mut bad = config();
    bad.port = 0;
    assert_eq!(dns.reconfigure(&bad).unwrap_err().field(), "port");
    assert_eq!(dns.config(), config());

    resolver.answer(Answer::Addrs(addrs(&[2])));
    let mut other = config();
    other.host = "other.test".into();
    other.port = 8080;
    dns.reconfigure(&other).unwrap();
    settle().await;
    assert_eq!(
        b.handle().keys(),
        vec![SocketAddr::from(([10, 0, 0, 2], 8080))]
    );
    assert_eq!(resolver.hosts.lock().unwrap().last().unwrap(), "other.test");
    assert_eq!(dns.config(), other);
}

#[tokio::test(start_paused = true)]
async fn the_task_stops_when_the_handle_is_dropped() {
    let resolver = TestResolver::new(Answer::Addrs(addrs(&[1])));
    let b = balancer();
    let dns = DnsDiscovery::new(config(), endpoint(Duration::ZERO))
        .resolver(resolver.clone())
        .spawn(b.handle())
        .unwrap();
    let clone = dns.clone();
    assert!(dns.resolved().await);
    next_round().await;
    next_round().await;
    assert_eq!(resolver.calls(), 3);

    // one clone dropped: still running
    drop(dns);
    next_round().await;
    assert_eq!(resolver.calls(), 4);
    // the last one dropped: stopped at once, the resolver released, the endpoints kept
    drop(clone);
    settle().await;
    assert_eq!(Arc::strong_count(&resolver.calls), 1);
    tokio::time::sleep(INTERVAL * 10).await;
    assert_eq!(resolver.calls(), 4);
    assert_eq!(sorted_keys(&b), addrs(&[1]));
}

#[tokio::test(start_paused = true)]
async fn the_task_stops_when_the_balancer_is_dropped() {
    let resolver = TestResolver::new(Answer::Fail);
    let b = balancer();
    let dns = DnsDiscovery::new(config(), endpoint(Duration::ZERO))
        .resolver(resolver.clone())
        .spawn(b.handle())
        .unwrap();
    settle().await;
    assert_eq!(resolver.calls(), 1);
    drop(b);
    // it ends at once (its resolver dropped), without resolving again
    settle().await;
    assert_eq!(Arc::strong_count(&resolver.calls), 1);
    assert!(!dns.resolved().await);
    assert_eq!(resolver.calls(), 1);
}

#[test]
fn spawn_needs_a_valid_config_and_a_runtime() {
    let b = balancer();
    let bad = DnsConfig::new("", 80);
    let err = DnsDiscovery::new(bad, endpoint(Duration::ZERO))
        .spawn(b.handle())
        .unwrap_err();
    assert!(matches!(err, Error::Config(e) if e.field() == "host"));
    let err = DnsDiscovery::new(config(), endpoint(Duration::ZERO))
        .spawn(b.handle())
        .unwrap_err();
    assert!(matches!(err, Error::NoRuntime { .. }));
}

#[test]
fn config_reads_from_toml_with_defaults() {
    let config: DnsConfig = toml::from_str("host = \"svc.ns.svc.cluster.local\"").unwrap();
    config.validate().unwrap();
    assert_eq!(config.port, 80);
    assert_eq!(config.interval, Duration::from_secs(5));
    assert_eq!(config.timeout, Duration::from_secs(2));
    let config: DnsConfig = toml::from_str("host = \"a\"\ninterval = \"10ms\"").unwrap();
    assert_eq!(config.validate().unwrap_err().field(), "interval");
}

/// End to end, with the system resolver and no outside DNS: `localhost` from /etc/hosts.
#[tokio::test]
async fn resolves_localhost_with_the_system_resolver() {
    let b = balancer();
    let dns = DnsDiscovery::new(DnsConfig::new("localhost", 4321), endpoint(Duration::ZERO))
        .spawn(b.handle())
        .unwrap();
    let resolved = tokio::time::timeout(Duration::from_secs(10), dns.resolved()).await;
    assert_eq!(resolved, Ok(true), "{:?}", dns.snapshot());
    let keys = b.handle().keys();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|a| a.ip().is_loopback() && a.port() == 4321),
        "{keys:?}"
    );
    assert_eq!(dns.snapshot().addresses.len(), keys.len());
    let mut b = b;
    let answered = b.ready().await.unwrap().call(0).await.unwrap();
    assert!(keys.contains(&answered));
}

/// A resolver that panics when called, before it returns a future.
struct PanicsWhenCalled;

impl Resolve for PanicsWhenCalled {
    #[allow(unreachable_code)]
    fn resolve(
        &self,
        _: &str,
        _: u16,
    ) -> impl std::future::Future<Output = Result<Vec<SocketAddr>, BoxError>> + Send {
        panic!("resolver bug");
        std::future::ready(Ok(vec![]))
    }
}

#[tokio::test(start_paused = true)]
async fn a_resolver_panicking_when_called_is_a_failure() {
    let b = balancer();
    let dns = DnsDiscovery::new(config(), endpoint(Duration::ZERO))
        .resolver(PanicsWhenCalled)
        .spawn(b.handle())
        .unwrap();
    settle().await;
    next_round().await;
    let snap = dns.snapshot();
    assert_eq!(snap.failures, 2);
    assert!(snap.last_error.unwrap().contains("panicked"));
}

#[tokio::test(start_paused = true)]
async fn resolutions_are_counted_by_result_and_the_addresses_gauged() {
    let capture = tower_prism_testkit::metrics::Capture::default();
    let resolver = TestResolver::new(Answer::Addrs(addrs(&[1, 2])));
    let b = balancer();
    // the handles are registered when the discovery is spawned
    let dns = metrics::with_local_recorder(&capture, || {
        DnsDiscovery::new(config(), endpoint(Duration::ZERO))
            .resolver(resolver.clone())
            .spawn(b.handle())
            .unwrap()
    });
    assert!(dns.resolved().await);
    let name = b.handle().name().to_owned();
    let resolutions = |result: &str| {
        capture.counter(&format!(
            "prism_balance_dns_resolutions_total{{name={name},result={result}}}"
        ))
    };
    let addresses = || capture.gauge(&format!("prism_balance_dns_addresses{{name={name}}}"));
    assert_eq!(resolutions("ok"), 1);
    assert_eq!(addresses(), 2.0);

    for answer in [
        Answer::Fail,
        Answer::Addrs(vec![]),
        Answer::Hang,
        Answer::Panic,
    ] {
        resolver.answer(answer);
        tokio::time::sleep(INTERVAL + Duration::from_secs(1) + Duration::from_millis(10)).await;
    }
    for result in ["error", "empty", "timeout", "panic"] {
        assert_eq!(resolutions(result), 1, "{result}");
    }
    assert_eq!(
        addresses(),
        2.0,
        "a failure keeps the last good set, and its count"
    );

    resolver.answer(Answer::Addrs(addrs(&[3])));
    dns.refresh();
    settle().await;
    assert_eq!((resolutions("ok"), addresses()), (2, 1.0));
}

/// `n` distinct addresses in the 10.`net`.0.0/16 block.
fn block(net: u8, n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, net, (i / 256) as u8, (i % 256) as u8], 80)))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_changes_every_address_at_the_cap_keeps_the_balancer_full() {
    let resolver = TestResolver::new(Answer::Addrs(block(1, MAX_ENDPOINTS)));
    let mut b = balancer();
    let dns = DnsDiscovery::new(config(), endpoint(Duration::ZERO))
        .resolver(resolver.clone())
        .spawn(b.handle())
        .unwrap();
    assert!(dns.resolved().await);
    assert_eq!(b.handle().len(), MAX_ENDPOINTS);

    // every address moves at once (a blue-green switch of a big pool): the new set replaces
    // the old whole; adding first at the cap would refuse every new address, then removing
    // the old ones would leave nothing
    resolver.answer(Answer::Addrs(block(2, MAX_ENDPOINTS)));
    dns.refresh();
    settle().await;
    // (compared whole, printed short: a failure prints 10,000 addresses otherwise)
    let keys = sorted_keys(&b);
    assert!(keys == block(2, MAX_ENDPOINTS), "{} endpoints", keys.len());
    let snap = dns.snapshot();
    assert!(snap.addresses == keys, "{} addresses", snap.addresses.len());
    assert_eq!(snap.over_capacity, 0);
    let answered = b.ready().await.unwrap().call(0).await.unwrap();
    assert!(block(2, MAX_ENDPOINTS).contains(&answered), "{answered}");
}

#[tokio::test(start_paused = true)]
async fn an_answer_over_the_cap_is_followed_up_to_it() {
    let made = Arc::new(AtomicUsize::new(0));
    let counted = made.clone();
    let make = move |addr| {
        counted.fetch_add(1, Ordering::SeqCst);
        endpoint(Duration::ZERO)(addr)
    };
    let resolver = TestResolver::new(Answer::Addrs(block(1, MAX_ENDPOINTS + 5)));
    let b = balancer();
    let dns = DnsDiscovery::new(config(), make)
        .resolver(resolver.clone())
        .spawn(b.handle())
        .unwrap();
    assert!(dns.resolved().await);
    assert_eq!(b.handle().len(), MAX_ENDPOINTS);
    let snap = dns.snapshot();
    assert_eq!(snap.addresses.len(), MAX_ENDPOINTS);
    assert_eq!(snap.over_capacity, 5);
    // only the endpoints that fit are made, this round and the next
    assert_eq!(made.load(Ordering::SeqCst), MAX_ENDPOINTS);
    next_round().await;
    assert_eq!(made.load(Ordering::SeqCst), MAX_ENDPOINTS);
    assert_eq!(dns.snapshot().resolutions, 2);
    assert_eq!(dns.snapshot().over_capacity, 5);

    // when the answer shrinks, what was left out fits and the shortfall is gone
    resolver.answer(Answer::Addrs(block(1, 100)));
    next_round().await;
    assert_eq!(sorted_keys(&b), block(1, 100));
    assert_eq!(dns.snapshot().over_capacity, 0);
}
