//! The stacks compared, each built over the same simulated upstream.

mod plain;
mod prism;
mod tower_stack;

use crate::load::Client;
use crate::scenario::Scenario;
use crate::upstream::EndpointService;

pub use prism::{
    effective, DEFAULTS_DEFAULT_POLICY, DEFAULTS_TUNED_POLICY, DEFAULT_POLICY, TUNED_POLICY,
};
pub use tower_stack::{DEFAULTS_SETTINGS as TOWER_DEFAULTS_SETTINGS, SETTINGS as TOWER_SETTINGS};

use crate::scenario::Suite;

/// tower's fixed concurrency limit in the lab (about 2x the upstream's 30 slots).
const TOWER_LIMIT: usize = 64;
/// tower's fixed concurrency limit in the defaults suite (2x the upstream's 8 slots).
const TOWER_DEFAULTS_LIMIT: usize = 16;

/// One of the stacks compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// A plain client: round robin over the endpoints, nothing else.
    Plain,
    /// tower 0.5's own middleware.
    Tower,
    /// tower-prism from one TOML policy with default settings.
    PrismDefault,
    /// tower-prism with the policy a user would write for these scenarios.
    PrismTuned,
}

impl Stack {
    /// Every stack, in the report's order.
    pub const ALL: [Stack; 4] = [
        Stack::Plain,
        Stack::Tower,
        Stack::PrismDefault,
        Stack::PrismTuned,
    ];

    /// The stack's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Plain => "no protection",
            Stack::Tower => "tower 0.5",
            Stack::PrismDefault => "tower-prism (default)",
            Stack::PrismTuned => "tower-prism (tuned)",
        }
    }

    /// Whether this is one of tower-prism's stacks (not a peer).
    pub fn is_prism(self) -> bool {
        matches!(self, Stack::PrismDefault | Stack::PrismTuned)
    }

    /// The stack over `endpoints` (the scenario's upstream, simulated or real). Call inside
    /// the runtime that will drive it (tower's `Buffer` spawns its worker there).
    ///
    /// `LAB_TUNED=path` runs the policy in that file in the tuned slot instead (to measure
    /// a variant against the default without rebuilding).
    pub fn build(self, scenario: &Scenario, endpoints: Vec<EndpointService>) -> Client {
        let capacity = scenario.upstream.capacity();
        if self == Stack::PrismTuned {
            if let Some(toml) = tuned_override() {
                return prism::build(&toml, endpoints, scenario);
            }
        }
        match (self, scenario.suite) {
            (Stack::Plain, _) => plain::build(endpoints),
            (Stack::Tower, Suite::Lab) => tower_stack::build(endpoints, capacity, TOWER_LIMIT),
            (Stack::Tower, Suite::Defaults) => {
                tower_stack::build(endpoints, capacity, TOWER_DEFAULTS_LIMIT)
            }
            (Stack::PrismDefault, Suite::Lab) => prism::build(DEFAULT_POLICY, endpoints, scenario),
            (Stack::PrismTuned, Suite::Lab) => prism::build(TUNED_POLICY, endpoints, scenario),
            (Stack::PrismDefault, Suite::Defaults) => {
                prism::build(DEFAULTS_DEFAULT_POLICY, endpoints, scenario)
            }
            (Stack::PrismTuned, Suite::Defaults) => {
                prism::build(DEFAULTS_TUNED_POLICY, endpoints, scenario)
            }
        }
    }
}

/// The policy of `LAB_TUNED`, if set; exits with a message if the file cannot be read.
fn tuned_override() -> Option<String> {
    let path = std::env::var_os("LAB_TUNED")?;
    match std::fs::read_to_string(&path) {
        Ok(toml) => Some(toml),
        Err(e) => {
            eprintln!("LAB_TUNED={}: {e}", path.to_string_lossy());
            std::process::exit(2);
        }
    }
}
