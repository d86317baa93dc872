//! The stacks compared, each built over the same simulated upstream.

mod plain;
mod prism;
mod resilience;
mod tower_stack;

use crate::load::Client;
use crate::scenario::Scenario;
use crate::upstream::EndpointService;

pub use prism::{
    effective, DEFAULTS_DEFAULT_POLICY, DEFAULTS_TUNED_POLICY, DEFAULT_POLICY, TUNED_POLICY,
};
pub use resilience::{Rejected as ResilienceRejected, SETTINGS as RESILIENCE_SETTINGS};
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
    /// tower-resilience's middleware (real mode only, see [`Stack::real_only`]).
    Resilience,
    /// tower-prism from one TOML policy with default settings.
    PrismDefault,
    /// tower-prism with the policy a user would write for these scenarios.
    PrismTuned,
}

impl Stack {
    /// Every stack, in the report's order.
    pub const ALL: [Stack; 5] = [
        Stack::Plain,
        Stack::Tower,
        Stack::Resilience,
        Stack::PrismDefault,
        Stack::PrismTuned,
    ];

    /// The stacks of the simulated mode: every one but the real-only ones.
    pub const SIMULATED: [Stack; 4] = [
        Stack::Plain,
        Stack::Tower,
        Stack::PrismDefault,
        Stack::PrismTuned,
    ];

    /// The stacks a mode runs, in the report's order: all of them on real sockets, the
    /// [`SIMULATED`](Stack::SIMULATED) ones on the paused clock.
    pub fn for_mode(real: bool) -> &'static [Stack] {
        if real {
            &Stack::ALL
        } else {
            &Stack::SIMULATED
        }
    }

    /// Whether the stack runs only in the real mode: tower-resilience's circuit breaker
    /// and retry budget read `std::time::Instant`, so on a paused tokio clock their waits
    /// would run on wall time.
    pub fn real_only(self) -> bool {
        self == Stack::Resilience
    }

    /// The stack's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Plain => "no protection",
            Stack::Tower => "tower 0.5",
            Stack::Resilience => "tower-resilience",
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
            (Stack::Resilience, _) => resilience::build(endpoints, capacity),
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
