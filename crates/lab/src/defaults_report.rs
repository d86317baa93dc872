//! The report of issue 15's suite (`-- defaults`): the stack's defaults over one upstream
//! of 8 slots x 20 ms, next to no protection, tower 0.5 and a tuned policy.

use std::fmt::Write as _;

use crate::measure::Measures;
use crate::report::{self, ScenarioResult};
use crate::scenario::defaults_upstream;
use crate::stacks::{
    effective, Stack, DEFAULTS_DEFAULT_POLICY, DEFAULTS_TUNED_POLICY, TOWER_DEFAULTS_SETTINGS,
};

fn find<'a>(results: &'a [ScenarioResult], name: &str) -> Option<&'a ScenarioResult> {
    results.iter().find(|r| r.scenario.name == name)
}

fn measures(result: &ScenarioResult, stack: Stack) -> Option<&Measures> {
    result
        .stacks
        .iter()
        .find(|(s, _)| *s == stack)
        .map(|(_, m)| m)
}

fn recovery(m: &Measures) -> String {
    match m.recovery {
        None => "-".to_string(),
        Some(None) => "never".to_string(),
        Some(Some(t)) => format!("{t:.1} s"),
    }
}

/// Failed calls (errors, non-2xx and timeouts) of a stack.
fn failed(m: &Measures) -> u64 {
    m.failed + m.timed_out
}

/// Goodput of every stack per scenario, then tower-prism default's other figures.
pub fn summary(results: &[ScenarioResult]) -> String {
    let mut out = String::from("| scenario |");
    for stack in Stack::SIMULATED {
        let _ = write!(out, " {} |", stack.name());
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(Stack::SIMULATED.len()));
    out.push('\n');
    for r in results {
        let _ = write!(out, "| `{}` |", r.scenario.name);
        for stack in Stack::SIMULATED {
            let cell = measures(r, stack).map_or("-".to_string(), |m| format!("{:.1}", m.goodput));
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out.push_str(
        "\ntower-prism (default), per scenario:\n\n\
         | scenario | goodput/s | p50 ms | p99 ms | amplification | in fault | recovery | refused by the stack |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let Some(m) = measures(r, Stack::PrismDefault) else {
            continue;
        };
        let refusals: Vec<_> = m
            .failures
            .iter()
            .filter(|(reason, _)| !matches!(*reason, "5xx" | "503" | "refused"))
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} | {} |",
            r.scenario.name,
            m.goodput,
            m.p50 * 1000.0,
            m.p99 * 1000.0,
            m.amplification,
            m.amplification_in_fault
                .map_or("-".to_string(), |a| format!("{a:.2}")),
            recovery(m),
            if refusals.is_empty() {
                "none".to_string()
            } else {
                refusals.join(", ")
            },
        );
    }
    out
}

/// Issue 15's targets for tower-prism's default policy, each with the figure measured and
/// whether it is met.
pub fn targets(results: &[ScenarioResult]) -> String {
    let mut out =
        String::from("| target | measured (tower-prism default) | met |\n|---|---|---|\n");
    let mut row = |target: String, measured: String, met: bool| {
        let _ = writeln!(
            out,
            "| {target} | {measured} | {} |",
            if met { "yes" } else { "**no**" }
        );
    };
    for r in results.iter().filter(|r| r.scenario.name != "unloaded") {
        let Some(m) = measures(r, Stack::PrismDefault) else {
            continue;
        };
        let best = r
            .stacks
            .iter()
            .filter(|(s, _)| *s != Stack::PrismDefault)
            .max_by(|a, b| a.1.goodput.total_cmp(&b.1.goodput));
        if let Some((best_stack, best)) = best {
            row(
                format!("`{}`: the highest goodput of all stacks", r.scenario.name),
                format!(
                    "{:.1}/s; best other: {} {:.1}/s",
                    m.goodput,
                    best_stack.name(),
                    best.goodput
                ),
                m.goodput >= best.goodput,
            );
        }
    }
    if let Some(r) = find(results, "full-outage") {
        if let (Some(m), Some(plain)) =
            (measures(r, Stack::PrismDefault), measures(r, Stack::Plain))
        {
            row(
                "`full-outage`: goodput at least no protection's".into(),
                format!("{:.1}/s vs {:.1}/s", m.goodput, plain.goodput),
                m.goodput >= plain.goodput,
            );
            let (text, met) = match m.recovery {
                Some(Some(t)) => (format!("{t:.1} s"), t <= 2.0),
                _ => ("never within the run".to_string(), false),
            };
            row(
                "`full-outage`: goodput back to 90 % of offered within 2 s".into(),
                text,
                met,
            );
            if let Some(a) = m.amplification_in_fault {
                row(
                    "`full-outage`: amplification at most 1.1 in the outage".into(),
                    format!("{a:.2}"),
                    a <= 1.1,
                );
            }
        }
    }
    let unloaded = find(results, "unloaded").and_then(|r| measures(r, Stack::PrismDefault));
    if let Some(m) = find(results, "overload-2x").and_then(|r| measures(r, Stack::PrismDefault)) {
        if let Some(base) = unloaded {
            let ratio = if base.p99 > 0.0 {
                m.p99 / base.p99
            } else {
                f64::INFINITY
            };
            row(
                "`overload-2x`: p99 at most 2x the unloaded p99".into(),
                format!(
                    "{:.1} ms / {:.1} ms = {ratio:.2}x",
                    m.p99 * 1000.0,
                    base.p99 * 1000.0
                ),
                ratio <= 2.0,
            );
        }
        let capacity = defaults_upstream().capacity();
        row(
            "`overload-2x`: goodput at least 95 % of capacity".into(),
            format!(
                "{:.1}/s, {:.0} % of {capacity:.0}/s",
                m.goodput,
                100.0 * m.goodput / capacity
            ),
            m.goodput >= 0.95 * capacity,
        );
    }
    if let Some(r) = find(results, "brownout-25") {
        if let (Some(m), Some(plain)) =
            (measures(r, Stack::PrismDefault), measures(r, Stack::Plain))
        {
            let share = 1.0 - failed(m) as f64 / failed(plain).max(1) as f64;
            row(
                "`brownout-25`: most failed calls recovered (1 - failed / failed without \
                 protection; a failure takes its service time, so retries of all of them \
                 would need 1.33x the capacity: 75 % at most)"
                    .into(),
                format!(
                    "{} failed vs {} without protection: {:.0} % recovered",
                    failed(m),
                    failed(plain),
                    100.0 * share
                ),
                share > 0.5,
            );
        }
    }
    if let Some(m) = find(results, "polite-shedding").and_then(|r| measures(r, Stack::PrismDefault))
    {
        let (text, met) = match m.recovery {
            Some(Some(t)) => (format!("{t:.1} s"), t <= 2.0),
            _ => ("never within the run".to_string(), false),
        };
        row(
            "`polite-shedding`: goodput back to 90 % of offered within 2 s of the end".into(),
            text,
            met,
        );
    }
    let lost: u64 = results
        .iter()
        .flat_map(|r| r.stacks.iter().map(|(_, m)| m.unaccounted))
        .sum();
    row(
        "zero requests lost or hung, every stack, every scenario".into(),
        format!("{lost}"),
        lost == 0,
    );
    out
}

/// The whole page: stacks, summary, targets and one section per scenario.
pub fn page(results: &[ScenarioResult], runs: usize) -> String {
    let mut text = format!(
        "# Adaptive defaults (issue 15), simulated\n\n\
         Generated by `cargo run --release -p tower-prism-lab -- defaults`: issue 15's \
         scenarios through each stack over one simulated upstream on tokio's paused clock. \
         The upstream is one endpoint of 8 slots, every call served in 20 ms (400 requests/s), \
         with a FIFO queue that never sheds on its own (the issue's \"every endpoint of three\" \
         answering 503 is the one endpoint answering 503: all three behave alike). Each cell \
         is the median of {runs} runs (`LAB_RUNS` to change), one per seed from the \
         scenario's own on; `range` is goodput's lowest-highest. Goodput counts successes within the client's 1 s deadline. \
         Amplification is attempts reaching the upstream per client request. Recovery is the \
         time from the fault's end until goodput over the next second is back to 90 % of the \
         offered load. `lost/hung` must be 0.\n\n## Stacks\n\n"
    );
    text.push_str("- **no protection**: calls go straight to the endpoint; no retry, no limit.\n");
    let _ = writeln!(text, "- **tower 0.5**: {TOWER_DEFAULTS_SETTINGS}");
    let _ = writeln!(
        text,
        "- **tower-prism (default)**: `default.toml` beside this report \
         (`crates/lab/policies/defaults-default.toml`), HTTP profile, no balancer:\n\n\
         ```toml\n{DEFAULTS_DEFAULT_POLICY}```"
    );
    let _ = writeln!(
        text,
        "- **tower-prism (tuned)**: `tuned.toml` beside this report \
         (`crates/lab/policies/defaults-tuned.toml`):\n\n```toml\n{DEFAULTS_TUNED_POLICY}```"
    );
    let _ = writeln!(
        text,
        "Every setting of the two policies as they ran (the files parsed and written back, \
         defaults included):\n\n<details><summary>default</summary>\n\n```toml\n{}```\n\n\
         </details>\n\n<details><summary>tuned</summary>\n\n```toml\n{}```\n\n</details>\n",
        effective(DEFAULTS_DEFAULT_POLICY),
        effective(DEFAULTS_TUNED_POLICY)
    );
    text.push_str(
        "**tower-resilience** is not in the simulated mode: its 0.13 circuit breaker, rate \
         limiter and retry budget read `std::time::Instant`, so on a paused tokio clock their \
         waits run on wall time and the comparison would be meaningless.\n\n\
         Timers of the paused clock have 1 ms resolution, so latencies are whole \
         milliseconds.\n\n## Summary: goodput/s\n\n",
    );
    text.push_str(&summary(results));
    text.push_str("\n## Targets (issue 15)\n\n");
    text.push_str(&targets(results));
    text.push_str("\n## Scenarios\n\n");
    for r in results {
        text.push_str(&report::markdown(r));
    }
    text
}
