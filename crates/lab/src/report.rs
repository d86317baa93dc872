//! The report: a markdown table per scenario and SVG charts (goodput and p99 over time,
//! one line per stack).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::measure::{Measures, STEP};
use crate::scenario::Scenario;
use crate::stacks::Stack;

/// One scenario's results, one entry per stack.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: Scenario,
    /// Each stack's figures.
    pub stacks: Vec<(Stack, Measures)>,
}

fn ms(seconds: f64) -> String {
    format!("{:.1}", seconds * 1000.0)
}

/// A latency in ms, or "none" when there was no success to measure.
fn latency(seconds: f64) -> String {
    if seconds > 0.0 {
        ms(seconds)
    } else {
        "none".to_string()
    }
}

fn opt(value: Option<f64>, f: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_string(), f)
}

/// The best goodput among the peers (stacks that are not tower-prism).
pub fn best_peer_goodput(result: &ScenarioResult) -> f64 {
    result
        .stacks
        .iter()
        .filter(|(s, _)| !s.is_prism())
        .map(|(_, m)| m.goodput)
        .fold(0.0, f64::max)
}

/// The markdown section of one scenario.
pub fn markdown(result: &ScenarioResult) -> String {
    let s = &result.scenario;
    let mut out = String::new();
    let _ = writeln!(out, "### `{}`: {}\n", s.name, s.title);
    let _ = writeln!(
        out,
        "First seed {}, {} s, upstream capacity {:.0} requests/s, offered load {:?}.\n",
        s.seed,
        s.duration.as_secs(),
        s.upstream.capacity(),
        s.load
    );
    let best = best_peer_goodput(result);
    out.push_str(
        "| stack | goodput/s | range | vs best peer | p50 ms | p99 ms | p99.9 ms | amplification | in fault | recovery s | p99 first/last 10 % ms | Jain | ok | failed | timed out | lost/hung |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (stack, m) in &result.stacks {
        let recovery = match m.recovery {
            None => "-".to_string(),
            Some(None) => "never".to_string(),
            Some(Some(t)) => format!("{t:.1}"),
        };
        let ratio = if best > 0.0 {
            format!("{:.2}x", m.goodput / best)
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            stack.name(),
            m.goodput,
            m.goodput_range
                .map_or_else(|| "-".to_string(), |(lo, hi)| format!("{lo:.1}-{hi:.1}")),
            ratio,
            latency(m.p50),
            latency(m.p99),
            latency(m.p999),
            m.amplification,
            opt(m.amplification_in_fault, |a| format!("{a:.2}")),
            recovery,
            latency(m.p99_first_last.0),
            latency(m.p99_first_last.1),
            opt(m.jain, |j| format!("{j:.3}")),
            m.ok,
            m.failed,
            m.timed_out,
            m.unaccounted,
        );
    }
    out.push_str("\nFailures by reason:\n\n");
    for (stack, m) in &result.stacks {
        let reasons: Vec<_> = m.failures.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let reasons = if reasons.is_empty() {
            "none".to_string()
        } else {
            reasons.join(", ")
        };
        let _ = writeln!(out, "- {}: {reasons}", stack.name());
    }
    let _ = writeln!(
        out,
        "\n![goodput]({name}-goodput.svg) ![p99]({name}-p99.svg)\n",
        name = s.name
    );
    out
}

/// Draws one chart of a series per stack into `path`.
fn chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[(Stack, Vec<f64>)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (720, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let points = series
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    let step = STEP.as_secs_f64();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..points as f64 * step, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_label)
        .draw()?;
    let colors = [RED, BLACK, BLUE, GREEN, MAGENTA, CYAN];
    for (i, (stack, values)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(
                values
                    .iter()
                    .enumerate()
                    .map(|(j, v)| ((j as f64 + 0.5) * step, *v)),
                color.stroke_width(2),
            ))?
            .label(stack.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Writes one scenario's two charts into `dir`.
pub fn charts(dir: &Path, result: &ScenarioResult) -> Result<(), Box<dyn std::error::Error>> {
    let name = result.scenario.name;
    let goodput: Vec<_> = result
        .stacks
        .iter()
        .map(|(s, m)| (*s, m.goodput_series.clone()))
        .collect();
    let p99: Vec<_> = result
        .stacks
        .iter()
        .map(|(s, m)| (*s, m.p99_series.iter().map(|v| v * 1000.0).collect()))
        .collect();
    chart(
        &dir.join(format!("{name}-goodput.svg")),
        &format!("{name}: goodput within 1 s (successes/s)"),
        "successes/s",
        &goodput,
    )?;
    chart(
        &dir.join(format!("{name}-p99.svg")),
        &format!("{name}: p99 latency of successes (ms, by send time)"),
        "ms",
        &p99,
    )
}

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

/// The most goodput any stack could have in `r` (requests/s): every request `m` offered
/// served in time, except while every endpoint is down (the `outage` window), when nothing
/// can be.
fn ceiling(r: &ScenarioResult, m: &Measures) -> f64 {
    let total = r.scenario.duration.as_secs_f64();
    let offered = m.sent as f64 / total;
    match (r.scenario.name, r.scenario.fault_window) {
        ("outage", Some((from, until))) => {
            offered * (1.0 - until.saturating_sub(from).as_secs_f64() / total)
        }
        _ => offered,
    }
}

/// The targets for tower-prism's default policy, each with the figure measured
/// and whether it is met.
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
    for r in results {
        let Some(m) = measures(r, Stack::PrismDefault) else {
            continue;
        };
        let best = best_peer_goodput(r);
        let top = r
            .stacks
            .iter()
            .all(|(s, other)| *s == Stack::PrismDefault || m.goodput >= other.goodput);
        let need = match r.scenario.name {
            "outage" | "slow-endpoint" | "failing-endpoint" => 1.2,
            _ => 1.0,
        };
        let ratio = if best > 0.0 { m.goodput / best } else { 0.0 };
        // Where a ratio is asked for, say how much the offered load allows at all.
        let room = if need > 1.0 && best > 0.0 {
            format!(
                " (serving every request offered would be {:.2}x)",
                ceiling(r, m) / best
            )
        } else {
            String::new()
        };
        row(
            format!(
                "`{}`: highest goodput, at least {need:.1}x the best peer",
                r.scenario.name
            ),
            format!(
                "{:.1}/s, {ratio:.2}x the best peer{}{room}",
                m.goodput,
                if top {
                    ""
                } else {
                    ", not the highest of all stacks"
                }
            ),
            top && ratio >= need,
        );
    }
    if let Some(m) = find(results, "outage").and_then(|r| measures(r, Stack::PrismDefault)) {
        if let Some(a) = m.amplification_in_fault {
            row(
                "`outage`: amplification at most 1.1 in the window".into(),
                format!("{a:.2}"),
                a <= 1.1,
            );
        }
        let (text, met) = match m.recovery {
            Some(Some(t)) => (format!("{t:.1} s"), t <= 2.0),
            _ => ("never within the run".to_string(), false),
        };
        row("`outage`: recovery within 2 s".into(), text, met);
    }
    if let Some(m) = find(results, "overload").and_then(|r| measures(r, Stack::PrismDefault)) {
        let (low, high) = m.p99_first_last;
        let ratio = if low > 0.0 { high / low } else { f64::INFINITY };
        row(
            "`overload`: p99 at 3x at most 2x the p99 at 0.5x".into(),
            format!(
                "{} ms at 3x / {} ms at 0.5x = {ratio:.2}x",
                latency(high),
                latency(low)
            ),
            ratio <= 2.0,
        );
    }
    if let Some(j) = find(results, "key-flood")
        .and_then(|r| measures(r, Stack::PrismDefault))
        .and_then(|m| m.jain)
    {
        row(
            "`key-flood`: Jain's index over 0.95".into(),
            format!("{j:.3}"),
            j > 0.95,
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
