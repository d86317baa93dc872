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
        "Seed {}, {} s, upstream capacity {:.0} requests/s, offered load {:?}.\n",
        s.seed,
        s.duration.as_secs(),
        s.upstream.capacity(),
        s.load
    );
    let best = best_peer_goodput(result);
    out.push_str(
        "| stack | goodput/s | vs best peer | p50 ms | p99 ms | p99.9 ms | amplification | in fault | recovery s | p99 first/last 10 % ms | Jain | ok | failed | timed out | lost/hung |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
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
            "| {} | {:.1} | {} | {} | {} | {} | {:.2} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            stack.name(),
            m.goodput,
            ratio,
            ms(m.p50),
            ms(m.p99),
            ms(m.p999),
            m.amplification,
            opt(m.amplification_in_fault, |a| format!("{a:.2}")),
            recovery,
            ms(m.p99_first_last.0),
            ms(m.p99_first_last.1),
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
