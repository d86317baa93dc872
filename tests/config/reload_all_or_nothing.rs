//! Property: for random sequences of valid and invalid reloads of two running policies,
//! every refused reload leaves every snapshot (limiters, breakers, retry, balancers)
//! exactly as it was, and every accepted one is visible in all of them.
//!
//! The sequences come from a seeded generator (SplitMix64), so a failure names the seed and
//! step that reproduce it; `RELOAD_PROPERTY_SEEDS` runs more seeds than the default 64.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use tower::Service;
use tower_prism::balance::{BalanceHandle, BalanceSnapshot, Strategy};
use tower_prism::{Policies, ReliabilityConfig, ReliabilityLayer, Snapshot};

use tower_prism_testkit::Rng;

/// The values a valid reload may set.
#[derive(Debug, Clone)]
struct Values {
    api_rate: u64,
    api_burst: u64,
    api_max_attempts: u64,
    api_threshold: f64,
    api_min_limit: u64,
    api_max_limit: u64,
    api_strategy: &'static str,
    search_rate: u64,
    search_wait_secs: u64,
    search_strategy: &'static str,
}

/// What a reload breaks, if anything.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    ZeroRate,
    ThresholdAboveOne,
    HashWithoutKeyFn,
    NewWindow,
    NewClock,
    StageRemoved,
    StageAdded,
    PolicyAdded,
    PolicyRemoved,
    ZeroAttempts,
    MinAboveMax,
    AbsurdWait,
    NotToml,
}

const FAULTS: [Fault; 13] = [
    Fault::ZeroRate,
    Fault::ThresholdAboveOne,
    Fault::HashWithoutKeyFn,
    Fault::NewWindow,
    Fault::NewClock,
    Fault::StageRemoved,
    Fault::StageAdded,
    Fault::PolicyAdded,
    Fault::PolicyRemoved,
    Fault::ZeroAttempts,
    Fault::MinAboveMax,
    Fault::AbsurdWait,
    Fault::NotToml,
];

const STRATEGIES: [&str; 3] = ["round_robin", "least_requests", "p2c_peak_ewma"];

fn values(rng: &mut Rng) -> Values {
    let api_min_limit = 1 + rng.below(5);
    Values {
        api_rate: 1 + rng.below(1000),
        api_burst: 1 + rng.below(50),
        api_max_attempts: 1 + rng.below(5),
        api_threshold: rng.pick(&[0.25, 0.5, 0.75, 1.0]),
        api_min_limit,
        api_max_limit: api_min_limit + rng.below(100),
        api_strategy: rng.pick(&STRATEGIES),
        search_rate: 1 + rng.below(1000),
        search_wait_secs: 1 + rng.below(600),
        search_strategy: rng.pick(&STRATEGIES),
    }
}

fn render(v: &Values, fault: Fault) -> String {
    let mut v = v.clone();
    match fault {
        Fault::ZeroRate => v.search_rate = 0,
        Fault::ZeroAttempts => v.api_max_attempts = 0,
        Fault::ThresholdAboveOne => v.api_threshold = 1.5,
        Fault::HashWithoutKeyFn => v.search_strategy = "consistent_hash",
        Fault::MinAboveMax => v.api_min_limit = v.api_max_limit + 1,
        _ => {}
    }
    let window = if fault == Fault::NewWindow { 30 } else { 20 };
    let clock = if fault == Fault::NewClock {
        "clock = \"tsc\""
    } else {
        ""
    };
    let wait = if fault == Fault::AbsurdWait {
        "500000000000y".to_owned()
    } else {
        format!("{}s", v.search_wait_secs)
    };
    let mut text = format!(
        r#"
[policy.api.rate_limit]
rate = {api_rate}
burst = {api_burst}
[policy.api.concurrency_limit]
initial_limit = {api_min_limit}
min_limit = {api_min_limit}
max_limit = {api_max_limit}
[policy.api.circuit_breaker]
window = {{ type = "count", size = {window} }}
failure_rate_threshold = {api_threshold}
{clock}
[policy.api.retry]
max_attempts = {api_max_attempts}
[policy.api.balance]
strategy = "{api_strategy}"
"#,
        api_rate = v.api_rate,
        api_burst = v.api_burst,
        api_min_limit = v.api_min_limit,
        api_max_limit = v.api_max_limit,
        api_threshold = v.api_threshold,
        api_max_attempts = v.api_max_attempts,
        api_strategy = v.api_strategy,
    );
    if fault != Fault::PolicyRemoved {
        text.push_str(&format!(
            r#"
[policy.search.rate_limit]
rate = {search_rate}
[policy.search.circuit_breaker]
window = {{ type = "time", duration = "60s", buckets = 6 }}
wait_duration = "{wait}"
[policy.search.balance]
strategy = "{search_strategy}"
"#,
            search_rate = v.search_rate,
            search_strategy = v.search_strategy,
        ));
        if fault == Fault::StageAdded {
            text.push_str("[policy.search.retry]\nmax_attempts = 2\n");
        }
    }
    if fault == Fault::StageRemoved {
        text = text.replace(
            "[policy.api.retry]\nmax_attempts",
            "# no retry\n# max_attempts",
        );
    }
    if fault == Fault::PolicyAdded {
        text.push_str("[policy.extra.rate_limit]\nrate = 5\n");
    }
    if fault == Fault::NotToml {
        text.push_str("[policy.api\n");
    }
    text
}

/// An endpoint that answers at once.
#[derive(Clone)]
struct Echo;

impl Service<u32> for Echo {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, n: u32) -> Self::Future {
        ready(Ok(n))
    }
}

fn balanced(layer: &ReliabilityLayer) -> BalanceHandle<u8, Echo> {
    let balance = layer
        .balancer::<u8, Echo, u32>()
        .endpoints([(1, Echo), (2, Echo)])
        .build()
        .unwrap();
    let handle = balance.handle().clone();
    drop(layer.balanced(balance));
    handle
}

/// Everything observable of the running policies.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    api: Snapshot,
    search: Snapshot,
    api_balancer: BalanceSnapshot<u8>,
    search_balancer: BalanceSnapshot<u8>,
}

fn strategy(name: &str) -> Strategy {
    match name {
        "round_robin" => Strategy::RoundRobin,
        "least_requests" => Strategy::LeastRequests,
        _ => Strategy::P2cPeakEwma,
    }
}

/// A rate read back from the limiter (kept as an interval in nanoseconds) is the one set,
/// within rounding.
fn close(per_second: f64, rate: u64) -> bool {
    (per_second - rate as f64).abs() <= rate as f64 * 1e-4
}

fn run_seed(seed: u64, steps: usize) {
    let mut rng = Rng::new(seed);
    let mut current = values(&mut rng);
    let policies =
        Policies::new(&ReliabilityConfig::from_toml(&render(&current, Fault::None)).unwrap())
            .unwrap();
    let (api, search) = (
        policies.get("api").unwrap(),
        policies.get("search").unwrap(),
    );
    let (api_balancer, search_balancer) = (balanced(&api), balanced(&search));
    let observe = || Observed {
        api: api.snapshot(),
        search: search.snapshot(),
        api_balancer: api_balancer.snapshot(),
        search_balancer: search_balancer.snapshot(),
    };
    for step in 0..steps {
        let next = values(&mut rng);
        let fault = if rng.below(2) == 0 {
            Fault::None
        } else {
            rng.pick(&FAULTS)
        };
        let before = observe();
        let result = policies.reload_toml(&render(&next, fault));
        let after = observe();
        let at = format!("seed {seed} step {step} fault {fault:?}");
        if fault == Fault::None {
            result.unwrap_or_else(|e| panic!("{at}: a valid reload was refused: {e}"));
            current = next;
        } else {
            let err = result.err().unwrap_or_else(|| panic!("{at}: accepted"));
            assert_eq!(after, before, "{at}: refused ({err}) but something changed");
        }
        // what runs is the last accepted config
        let v = &current;
        let rate = after.api.rate_limit.as_ref().unwrap();
        assert!(close(rate.rate_per_second, v.api_rate), "{at}: {rate:?}");
        assert_eq!(u64::from(rate.burst), v.api_burst, "{at}");
        let limit = after.api.concurrency_limit.as_ref().unwrap();
        assert_eq!(
            (u64::from(limit.min_limit), u64::from(limit.max_limit)),
            (v.api_min_limit, v.api_max_limit),
            "{at}"
        );
        let retry = after.api.retry.as_ref().unwrap();
        assert_eq!(u64::from(retry.max_attempts), v.api_max_attempts, "{at}");
        assert_eq!(
            after.api_balancer.strategy,
            strategy(v.api_strategy),
            "{at}"
        );
        let search_rate = after.search.rate_limit.as_ref().unwrap();
        assert!(close(search_rate.rate_per_second, v.search_rate), "{at}");
        assert_eq!(
            after.search_balancer.strategy,
            strategy(v.search_strategy),
            "{at}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_reload_changes_no_snapshot_and_an_accepted_one_changes_all() {
    let seeds = std::env::var("RELOAD_PROPERTY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    for seed in 0..seeds {
        run_seed(seed, 30);
    }
}
