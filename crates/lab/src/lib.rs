//! The overload and fault lab: named scenarios driven through tower-prism and the stacks
//! users would pick instead, over one simulated upstream, on tokio's paused clock.
//!
//! `cargo run --release -p tower-prism-lab -- [SCENARIO|all]` writes the report to
//! `target/lab/`.

pub mod load;
pub mod measure;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod stacks;
pub mod upstream;

use std::time::Duration;

use measure::Measures;
use scenario::Scenario;
use stacks::Stack;
use upstream::Upstream;

/// Runs `scenario` through `stack` on a fresh single-threaded runtime with a paused clock
/// (a discrete-event simulation: the same seed gives the same figures).
pub fn simulate(scenario: &Scenario, stack: Stack) -> Measures {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let upstream = Upstream::new(scenario.upstream.clone(), scenario.seed);
        let client = stack.build(scenario, &upstream);
        let run = load::drive(scenario, scenario.upstream.capacity(), client).await;
        measure::measure(scenario, &run, &upstream.attempts())
    })
}

/// How long a simulated run covers, for the progress line.
pub fn simulated_time(scenario: &Scenario) -> Duration {
    scenario.duration
}
