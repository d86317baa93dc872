//! tower-prism's stacks: one `ReliabilityLayer` from a TOML policy (HTTP profile) over a
//! balancer of the endpoints, plus a per-key rate limit in the key flood.

use std::time::Duration;

use tower::util::BoxCloneService;
use tower::Layer;
use tower_prism::limit::rate::{RateLimitConfig, RateLimitLayer};
use tower_prism::{Http, ReliabilityConfig, ReliabilityLayer};

use crate::load::Client;
use crate::scenario::Scenario;
use crate::upstream::{EndpointService, Request, CLIENT_HEADER};

/// The policy with default settings (`crates/lab/policies/default.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.toml");
/// The policy a user would write (`crates/lab/policies/tuned.toml`).
pub const TUNED_POLICY: &str = include_str!("../../policies/tuned.toml");
/// The defaults suite's policy: a concurrency limit, a circuit breaker and a retry stage,
/// every setting at its default (`crates/lab/policies/defaults-default.toml`).
pub const DEFAULTS_DEFAULT_POLICY: &str = include_str!("../../policies/defaults-default.toml");
/// The defaults suite's policy as a user would tune it for the upstream
/// (`crates/lab/policies/defaults-tuned.toml`).
pub const DEFAULTS_TUNED_POLICY: &str = include_str!("../../policies/defaults-tuned.toml");

/// Every setting of the policy in `toml`, defaults included: the file parsed and written
/// back, so the report states what actually runs.
pub fn effective(toml: &str) -> String {
    let config = ReliabilityConfig::from_toml(toml).expect("the lab's policies are valid");
    toml::to_string(&config).unwrap_or_else(|e| format!("# cannot write the policy: {e}\n"))
}

fn client_key(request: &Request) -> u64 {
    request
        .headers()
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The stack of policy `lab` in `toml` over `endpoints`; in the key flood, a per-key
/// limiter in front (tower-prism's keyed `RateLimitLayer`, default key table). A policy
/// without a `balance` table must have one endpoint, which the stack wraps directly.
pub fn build(toml: &str, endpoints: Vec<EndpointService>, scenario: &Scenario) -> Client {
    let config = ReliabilityConfig::from_toml(toml).expect("the lab's policies are valid");
    let layer = ReliabilityLayer::from_config_as(&config, "lab", Http).expect("a valid policy");
    let balanced = config.get("lab").is_ok_and(|p| p.balance.is_some());
    if !balanced {
        assert_eq!(
            endpoints.len(),
            1,
            "a policy without balance takes one endpoint"
        );
        let endpoint = endpoints.into_iter().next().expect("one endpoint");
        return BoxCloneService::new(layer.layer(endpoint));
    }
    let stack = layer
        .layer_endpoints(endpoints.into_iter().enumerate())
        .expect("endpoints");
    match scenario.key_flood {
        None => BoxCloneService::new(stack),
        Some(flood) => {
            let per_key = RateLimitConfig::new(flood.per_key_rate, Duration::from_secs(1));
            let keyed = RateLimitLayer::from_config(&per_key)
                .expect("a valid per-key limit")
                .key_fn(client_key);
            BoxCloneService::new(keyed.layer(stack))
        }
    }
}
