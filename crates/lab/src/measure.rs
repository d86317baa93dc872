//! What a run measured: goodput, latency percentiles, amplification, recovery, fairness
//! and the accounting of every request.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::load::{Outcome, Run};
use crate::scenario::{Scenario, Suite};
use crate::upstream::ATTEMPT_BUCKET;

/// The timeline's resolution (one point of the charts).
pub const STEP: Duration = Duration::from_secs(1);

/// The figures of one stack in one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Measures {
    /// Requests sent.
    pub sent: u64,
    /// Successes within the deadline.
    pub ok: u64,
    /// Errors and non-2xx answers within the deadline.
    pub failed: u64,
    /// Failures by reason (see [`reason`](crate::load::reason)).
    pub failures: Vec<(&'static str, u64)>,
    /// Requests with no answer within the deadline.
    pub timed_out: u64,
    /// Requests never accounted for (lost or hung): must be 0.
    pub unaccounted: u64,
    /// Successes per second within the deadline, over the whole run (of the
    /// well-behaved clients only, in the key flood).
    pub goodput: f64,
    /// The lowest and highest goodput over repeated runs (see
    /// [`simulate_median`](crate::simulate_median)); `None` for a single run.
    pub goodput_range: Option<(f64, f64)>,
    /// Latency percentiles of successes, in seconds: p50, p99, p99.9.
    pub p50: f64,
    /// See `p50`.
    pub p99: f64,
    /// See `p50`.
    pub p999: f64,
    /// Attempts reaching the upstream per client request, over the whole run.
    pub amplification: f64,
    /// The same inside the fault window.
    pub amplification_in_fault: Option<f64>,
    /// Time from the fault's end until goodput (over the next second) is back to 90 % of
    /// its level in the 10 s before the fault (in the [`Suite::Defaults`] scenarios: of the
    /// offered load); `None` if it never is, or no fault.
    pub recovery: Option<Option<f64>>,
    /// Jain's index of the well-behaved clients' successes (key flood only).
    pub jain: Option<f64>,
    /// p99 of successes sent in the first and the last tenth of the run (overload ramp).
    pub p99_first_last: (f64, f64),
    /// Goodput per [`STEP`].
    pub goodput_series: Vec<f64>,
    /// p99 of successes per [`STEP`] (by the time they were sent), in seconds.
    pub p99_series: Vec<f64>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

/// Jain's fairness index of `x`: 1 when all are equal, 1/n when one has everything.
pub fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let squares: f64 = x.iter().map(|v| v * v).sum();
    if squares == 0.0 {
        return 1.0;
    }
    sum * sum / (x.len() as f64 * squares)
}

/// The figures of `run` over `attempts` (the upstream's attempt buckets).
pub fn measure(scenario: &Scenario, run: &Run, attempts: &[u64]) -> Measures {
    let total = scenario.duration.as_secs_f64();
    let count = |o: Outcome| run.records.iter().filter(|r| r.outcome == o).count() as u64;
    let mut failures = BTreeMap::new();
    for r in &run.records {
        if let Outcome::Failed(reason) = r.outcome {
            *failures.entry(reason).or_insert(0u64) += 1;
        }
    }
    // In the key flood only the well-behaved clients' successes are useful work.
    let useful = |client: u32| scenario.key_flood.is_none_or(|f| client < f.clients);
    let successes: Vec<_> = run
        .records
        .iter()
        .filter(|r| r.outcome == Outcome::Ok && useful(r.client))
        .collect();
    let ok = count(Outcome::Ok);
    if std::env::var_os("LAB_TRACE").is_some() {
        trace(run);
    }
    let latencies = sorted(successes.iter().map(|r| r.latency).collect());

    let steps = (total / STEP.as_secs_f64()).ceil() as usize;
    let step = STEP.as_secs_f64();
    let mut goodput_series = vec![0.0; steps];
    let mut by_step: Vec<Vec<f64>> = vec![Vec::new(); steps];
    for r in &successes {
        let done = ((r.sent + r.latency) / step) as usize;
        if done < steps {
            goodput_series[done] += 1.0 / step;
        }
        let sent = ((r.sent / step) as usize).min(steps - 1);
        by_step[sent].push(r.latency);
    }
    let p99_series = by_step
        .into_iter()
        .map(|l| percentile(&sorted(l), 0.99))
        .collect();

    let bucket = ATTEMPT_BUCKET.as_secs_f64();
    let attempts_between = |from: f64, until: f64| -> u64 {
        attempts
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let t = *i as f64 * bucket;
                t >= from && t < until
            })
            .map(|(_, n)| n)
            .sum()
    };
    let sent_between = |from: f64, until: f64| {
        run.records
            .iter()
            .filter(|r| r.sent >= from && r.sent < until)
            .count() as f64
    };
    let all_attempts: u64 = attempts.iter().sum();
    let window = scenario
        .fault_window
        .map(|(a, b)| (a.as_secs_f64(), b.as_secs_f64()));
    let amplification_in_fault =
        window.map(|(a, b)| attempts_between(a, b) as f64 / sent_between(a, b).max(1.0));

    let done_between = |from: f64, until: f64| {
        successes
            .iter()
            .filter(|r| {
                let t = r.sent + r.latency;
                t >= from && t < until
            })
            .count() as f64
            / (until - from)
    };
    let recovery = window.map(|(a, b)| {
        let before = match scenario.suite {
            Suite::Lab => done_between((a - 10.0).max(0.0), a),
            Suite::Defaults => scenario.upstream.capacity() * scenario.load.at(b / total),
        };
        let mut t = b;
        while t + 1.0 <= total {
            if done_between(t, t + 1.0) >= 0.9 * before {
                return Some(t - b);
            }
            t += 0.1;
        }
        None
    });

    // Fairness of the share of each well-behaved client's requests that succeeded (counts
    // of successes would mostly measure the Poisson noise of who sent how many).
    let jain = scenario.key_flood.map(|f| {
        let mut sent = vec![0.0; f.clients as usize];
        let mut ok = vec![0.0; f.clients as usize];
        for r in &run.records {
            if let Some(slot) = sent.get_mut(r.client as usize) {
                *slot += 1.0;
                if r.outcome == Outcome::Ok {
                    ok[r.client as usize] += 1.0;
                }
            }
        }
        let shares: Vec<f64> = sent
            .iter()
            .zip(&ok)
            .filter(|(s, _)| **s > 0.0)
            .map(|(s, o)| o / s)
            .collect();
        jain(&shares)
    });

    let tenth = total / 10.0;
    let p99_of = |from: f64, until: f64| {
        let l = sorted(
            successes
                .iter()
                .filter(|r| r.sent >= from && r.sent < until)
                .map(|r| r.latency)
                .collect(),
        );
        percentile(&l, 0.99)
    };

    Measures {
        sent: run.sent,
        ok,
        failed: failures.values().sum(),
        failures: failures.into_iter().collect(),
        timed_out: count(Outcome::TimedOut),
        unaccounted: run.sent - run.records.len() as u64,
        goodput: successes.len() as f64 / total,
        goodput_range: None,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        p999: percentile(&latencies, 0.999),
        amplification: all_attempts as f64 / (run.sent.max(1)) as f64,
        amplification_in_fault,
        recovery,
        jain,
        p99_first_last: (p99_of(0.0, tenth), p99_of(total - tenth, total)),
        goodput_series,
        p99_series,
    }
}

/// `LAB_TRACE=1`: the outcomes of the requests sent in each 100 ms, on stderr, to see
/// when a stack refuses what (the report gives only totals).
fn trace(run: &Run) {
    let mut steps: BTreeMap<u64, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for r in &run.records {
        let name = match r.outcome {
            Outcome::Ok => "ok",
            Outcome::Failed(reason) => reason,
            Outcome::TimedOut => "timed out",
        };
        *steps
            .entry((r.sent * 10.0) as u64)
            .or_default()
            .entry(name)
            .or_insert(0) += 1;
    }
    for (step, outcomes) in steps {
        let line: Vec<_> = outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        eprintln!("{:>6.1} s  {}", step as f64 / 10.0, line.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_for_equal_shares_and_one_over_n_for_one_taker() {
        assert!((jain(&[3.0, 3.0, 3.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[9.0, 0.0, 0.0]) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn percentile_takes_the_rank_at_or_above() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }
}
