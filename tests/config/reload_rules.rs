//! The hot-reload rules, one test each: a reload is all or nothing across stages and across
//! policies; the set of policies and each policy's stage tables (`balance` included) are
//! fixed while running; what can change applies to every running stage, and to balancers
//! built after the reload.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use tower::Service;
use tower_prism::balance::{BalanceHandle, Strategy};
use tower_prism::{ConfigFileError, Policies, ReliabilityConfig, ReliabilityLayer};

/// An endpoint that answers its own name.
#[derive(Clone)]
struct Echo(&'static str);

impl Service<u32> for Echo {
    type Response = &'static str;
    type Error = Infallible;
    type Future = Ready<Result<&'static str, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        ready(Ok(self.0))
    }
}

/// Stacks a two-endpoint balancer (no key function) under `layer`; returns its handle.
fn balanced(layer: &ReliabilityLayer) -> BalanceHandle<&'static str, Echo> {
    let balance = layer
        .balancer::<&'static str, Echo, u32>()
        .endpoint("a", Echo("a"))
        .endpoint("b", Echo("b"))
        .build()
        .unwrap();
    let handle = balance.handle().clone();
    drop(layer.balanced(balance));
    handle
}

const RUNNING: &str = r#"
    [policy.api.rate_limit]
    rate = 10
    [policy.api.retry]
    max_attempts = 2
    [policy.api.balance]
    strategy = "round_robin"

    [policy.search.rate_limit]
    rate = 100
"#;

fn running() -> (Policies, BalanceHandle<&'static str, Echo>) {
    let policies = Policies::new(&ReliabilityConfig::from_toml(RUNNING).unwrap()).unwrap();
    let handle = balanced(&policies.get("api").unwrap());
    (policies, handle)
}

fn rates(policies: &Policies) -> (f64, f64) {
    let rate = |name| {
        let layer = policies.get(name).unwrap();
        layer.snapshot().rate_limit.unwrap().rate_per_second
    };
    (rate("api"), rate("search"))
}

#[test]
fn a_balancer_refusing_the_strategy_leaves_the_rate_unchanged() {
    let (policies, handle) = running();
    // the rate changes and the balancer is asked for consistent hashing, which it cannot do
    // without a key function: the rate limiter comes before the balancer, but the whole
    // reload is refused before either changes
    let err = policies
        .reload_toml(
            &RUNNING
                .replace("rate = 10\n", "rate = 20\n")
                .replace("round_robin", "consistent_hash"),
        )
        .unwrap_err();
    assert_eq!(err.field(), Some("policy.api.balance.strategy"), "{err}");
    assert_eq!(rates(&policies), (10.0, 100.0));
    assert_eq!(handle.snapshot().strategy, Strategy::RoundRobin);
    let api = policies.get("api").unwrap();
    assert_eq!(api.snapshot().retry.unwrap().max_attempts, 2);
    // the same through the layer's own reconfigure
    let mut policy =
        ReliabilityConfig::from_toml(&RUNNING.replace("round_robin", "consistent_hash"))
            .unwrap()
            .policy
            .remove("api")
            .unwrap();
    policy.rate_limit.as_mut().unwrap().rate = 30;
    assert!(api.reconfigure(&policy).is_err());
    assert_eq!(rates(&policies), (10.0, 100.0));
}

#[test]
fn a_refused_policy_leaves_the_other_policies_unchanged() {
    let two = format!("{RUNNING}\n[policy.search.balance]\nstrategy = \"round_robin\"");
    let policies = Policies::new(&ReliabilityConfig::from_toml(&two).unwrap()).unwrap();
    let api = balanced(&policies.get("api").unwrap());
    let search = balanced(&policies.get("search").unwrap());
    // `search` (applied after `api`) has a balancer that cannot hash: `api`'s valid
    // changes are not applied either
    let err = policies
        .reload_toml(
            &two.replace("rate = 10\n", "rate = 20\n")
                .replacen("round_robin", "least_requests", 1)
                .replacen("round_robin", "consistent_hash", 1),
        )
        .unwrap_err();
    assert_eq!(err.field(), Some("policy.search.balance.strategy"), "{err}");
    assert_eq!(rates(&policies), (10.0, 100.0));
    assert_eq!(api.snapshot().strategy, Strategy::RoundRobin);
    assert_eq!(search.snapshot().strategy, Strategy::RoundRobin);
    // a clock change in `search` is refused the same way
    let err = policies
        .reload_toml(&two.replace("rate = 10\n", "rate = 20\n").replace(
            "[policy.search.rate_limit]",
            "[policy.search.rate_limit]\nclock = \"tsc\"",
        ))
        .unwrap_err();
    assert_eq!(err.field(), Some("policy.search.rate_limit.clock"), "{err}");
    assert_eq!(rates(&policies), (10.0, 100.0));
}

#[test]
fn removing_a_balance_table_is_refused_and_the_balancer_keeps_its_strategy() {
    let (policies, handle) = running();
    let without = RUNNING.replace("[policy.api.balance]\n    strategy = \"round_robin\"", "");
    let err = policies.reload_toml(&without).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigFileError::ShapeChanged { ref policy, stage: "balance", change: "remove" }
                if policy == "api"
        ),
        "{err}"
    );
    assert_eq!(handle.snapshot().strategy, Strategy::RoundRobin);
    assert_eq!(
        err.to_string(),
        "policy \"api\": cannot remove the `balance` stage of a running layer; \
         restart to change the stack's shape"
    );
}

#[test]
fn adding_a_balance_table_is_refused() {
    let (policies, _) = running();
    let with = format!("{RUNNING}\n[policy.search.balance]\nstrategy = \"round_robin\"");
    let err = policies.reload_toml(&with).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigFileError::ShapeChanged {
                stage: "balance",
                change: "add",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_reload_adding_a_policy_is_refused_naming_it() {
    let (policies, _) = running();
    let more = format!(
        "{}\n[policy.extra.rate_limit]\nrate = 5",
        RUNNING.replace("rate = 10\n", "rate = 20\n")
    );
    let err = policies.reload_toml(&more).unwrap_err();
    assert!(
        matches!(err, ConfigFileError::PoliciesChanged { ref policy, change: "add" } if policy == "extra"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "policy \"extra\": a reload cannot add a policy; restart to change the set of policies"
    );
    assert!(matches!(
        policies.get("extra"),
        Err(ConfigFileError::UnknownPolicy { .. })
    ));
    assert_eq!(rates(&policies), (10.0, 100.0), "nothing applied");
    assert_eq!(policies.names().collect::<Vec<_>>(), ["api", "search"]);
}

#[test]
fn a_reload_removing_a_policy_is_refused_naming_it() {
    let (policies, _) = running();
    let fewer = "[policy.api.rate_limit]\nrate = 20\n[policy.api.retry]\n[policy.api.balance]";
    let err = policies.reload_toml(fewer).unwrap_err();
    assert!(
        matches!(err, ConfigFileError::PoliciesChanged { ref policy, change: "remove" } if policy == "search"),
        "{err}"
    );
    assert_eq!(rates(&policies), (10.0, 100.0));
}

#[test]
fn an_accepted_reload_reaches_running_balancers_and_later_ones() {
    let (policies, handle) = running();
    policies
        .reload_toml(&RUNNING.replace("round_robin", "least_requests"))
        .unwrap();
    assert_eq!(handle.snapshot().strategy, Strategy::LeastRequests);
    // a balancer built after the reload starts from the reloaded table
    let later = balanced(&policies.get("api").unwrap());
    assert_eq!(later.snapshot().strategy, Strategy::LeastRequests);
    assert_eq!(policies.get("api").unwrap().snapshot().balancers, 2);
}

#[test]
fn an_adaptive_rate_keeps_its_table_and_takes_its_new_values() {
    let adaptive = |min: f64, max: f64| {
        RUNNING.replace(
            "rate = 100\n",
            &format!("rate = 100\nadaptive = {{ min_rate = {min:?}, max_rate = {max:?} }}\n"),
        )
    };
    let policies =
        Policies::new(&ReliabilityConfig::from_toml(&adaptive(1.0, 5.0)).unwrap()).unwrap();
    assert_eq!(rates(&policies), (10.0, 5.0));
    // new bounds apply: the rate is clamped to them, not to the ones built with
    policies.reload_toml(&adaptive(50.0, 200.0)).unwrap();
    assert_eq!(rates(&policies), (10.0, 100.0));
    // a reload cannot switch the adaptive rate off (nor on: the limiter has no health
    // subscription to read), and the refusal changes nothing
    let err = policies
        .reload_toml(&RUNNING.replace("rate = 10\n", "rate = 20\n"))
        .unwrap_err();
    assert_eq!(
        err.field(),
        Some("policy.search.rate_limit.adaptive"),
        "{err}"
    );
    assert_eq!(rates(&policies), (10.0, 100.0));
    let (plain, _) = running();
    let err = plain.reload_toml(&adaptive(1.0, 5.0)).unwrap_err();
    assert_eq!(
        err.field(),
        Some("policy.search.rate_limit.adaptive"),
        "{err}"
    );
    assert_eq!(rates(&plain), (10.0, 100.0));
}

/// A balancer whose builder `balancer()` made before a reload, joining after it, runs the
/// table in force (as every reload makes the policy's balancers run); it ran the one from
/// before the reload until the next.
#[test]
fn a_balancer_built_across_a_reload_runs_the_table_in_force() {
    let (policies, _) = running();
    let layer = policies.get("api").unwrap();
    let builder = layer.balancer::<&'static str, Echo, u32>();
    policies
        .reload(
            &ReliabilityConfig::from_toml(&RUNNING.replace("round_robin", "least_requests"))
                .unwrap(),
        )
        .unwrap();
    let balance = builder.endpoint("a", Echo("a")).build().unwrap();
    let handle = balance.handle().clone();
    assert_eq!(handle.config().strategy, Strategy::RoundRobin, "as built");
    drop(layer.balanced(balance));
    assert_eq!(handle.config().strategy, Strategy::LeastRequests);
    // one built with a config of its own keeps it until a reload
    let mut own = handle.config();
    own.strategy = Strategy::P2cPeakEwma;
    let balance = layer
        .balancer::<&'static str, Echo, u32>()
        .config(own)
        .endpoint("b", Echo("b"))
        .build()
        .unwrap();
    let handle = balance.handle().clone();
    drop(layer.balanced(balance));
    assert_eq!(handle.config().strategy, Strategy::P2cPeakEwma);
}

/// A running retry stage keeps its budget's window (the width of the budget's slots is
/// fixed when it is built): a reload changing it is refused naming the field, and changes
/// nothing; the budget's other values still apply. Before, the reload was accepted and the
/// handle reported the new window while the floor (`min_per_second` x window) kept the old.
#[test]
fn a_retry_budget_keeps_its_window() {
    let policy = |min: u32, window: &str, attempts: u32| {
        format!(
            "[policy.p.retry]\nmax_attempts = {attempts}\n\
             budget = {{ success_ratio = 0.0, min_per_second = {min}, window = \"{window}\" }}\n"
        )
    };
    let retry = |policies: &Policies| policies.get("p").unwrap().snapshot().retry.unwrap();
    let policies =
        Policies::new(&ReliabilityConfig::from_toml(&policy(10, "10s", 3)).unwrap()).unwrap();
    assert_eq!(retry(&policies).budget_available, 100.0);
    let err = policies.reload_toml(&policy(10, "1s", 5)).unwrap_err();
    assert_eq!(err.field(), Some("policy.p.retry.budget.window"), "{err}");
    assert!(err.to_string().contains("built with 10s"), "{err}");
    let s = retry(&policies);
    assert_eq!(
        (s.budget_available, s.max_attempts),
        (100.0, 3),
        "nothing changed"
    );
    // the same window with a new floor applies
    policies.reload_toml(&policy(20, "10s", 5)).unwrap();
    let s = retry(&policies);
    assert_eq!((s.budget_available, s.max_attempts), (200.0, 5));
}

/// The policy keeps no balancer alive: once its user drops a balancer, its health checks
/// stop and a reload no longer counts it. The policy held every balancer it stacked for
/// good (and kept probing their endpoints), so a service rebuilding its balancers leaked
/// one each time.
#[tokio::test(start_paused = true)]
async fn a_balancer_its_user_dropped_is_not_kept_by_the_policy() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let (policies, handle) = running();
    let api = policies.get("api").unwrap();
    let probes = Arc::new(AtomicUsize::new(0));
    let counted = probes.clone();
    let probed = api
        .balancer::<&'static str, Echo, u32>()
        .endpoint("a", Echo("a"))
        .health_check(move |_: &&'static str| {
            counted.fetch_add(1, Ordering::SeqCst);
            ready(true)
        })
        .build()
        .unwrap();
    let service = api.balanced(probed);
    assert_eq!(api.snapshot().balancers, 2);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(probes.load(Ordering::SeqCst) > 0, "probing while in use");

    drop(service);
    let before = probes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(probes.load(Ordering::SeqCst), before, "still probing");
    assert_eq!(api.snapshot().balancers, 1, "only the running one");
    policies
        .reload_toml(&RUNNING.replace("round_robin", "least_requests"))
        .unwrap();
    assert_eq!(handle.snapshot().strategy, Strategy::LeastRequests);
}
