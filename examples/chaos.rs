//! The chaos demo: three flaky HTTP upstreams on 127.0.0.1 behind the whole stack.
//!
//! ```sh
//! cargo run --example chaos
//! ```
//!
//! For 17 seconds it drives ~300 requests per second at a policy that admits 200 per second
//! (rate limit -> deadline -> circuit breaker -> retry with hedging -> p2c balance over three
//! upstreams -> fault injection), while the upstreams misbehave on a script: one answers
//! 500s, one dies and comes back (outlier ejection and retries hide both), then all three
//! fail at once (the breaker opens and fails fast) and recover (half-open probes close it),
//! then one turns 400 ms slow (hedges sent to the other two after 60 ms win the race), then
//! a game day: a hot reload adds a `fault` table that fails 20 % of calls, and another
//! takes it away (retries hide most of them). Each second it prints what the stack did; at
//! the end, a summary in which every request is accounted for. Nothing leaves loopback and
//! it stops on its own.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{EndpointError, Get, HttpEndpoint, Reply, Upstream};
use tower::ServiceExt;
use tower_prism::Outcome;
use tower_prism::{Classified, Error, ErrorKind, ReliabilityConfig, ReliabilityLayer};

const POLICY: &str = r#"
[policy.chaos.rate_limit]
rate = 200
period = "1s"
burst = 40

[policy.chaos.deadline]
timeout = "2s"

[policy.chaos.circuit_breaker]
window = { type = "count", size = 50 }
minimum_calls = 20
failure_rate_threshold = 0.5
wait_duration = "1s"
permitted_calls_in_half_open = 3

[policy.chaos.retry]
max_attempts = 2
backoff = { kind = "exponential", base = "10ms", max = "100ms", jitter = "full" }

[policy.chaos.retry.hedge]
delay = "60ms"
max_hedged = 1

[policy.chaos.balance]
strategy = "p2c_peak_ewma"

[policy.chaos.balance.outlier]
consecutive_failures = 5
base_ejection_time = "2s"
max_ejection_time = "4s"
max_ejection_percent = 67
"#;

/// What the game day adds to the policy, by hot reload, from t=14s to t=16s.
const GAME_DAY: &str = r#"
[policy.chaos.fault]
error = 0.2
seed = 42
"#;

const SECONDS: u64 = 17;
const OFFERED_PER_SECOND: u64 = 300;

/// A 5xx answer is a retryable failure (for the breaker, retries and outlier ejection), like
/// a refused connection.
fn classify(result: Result<&Reply, &EndpointError>) -> Outcome {
    match result {
        Ok(reply) if reply.status.is_server_error() => Outcome::RETRYABLE,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::RETRYABLE,
    }
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    upstream_error: AtomicU64,
    rate_limited: AtomicU64,
    circuit_open: AtomicU64,
    no_endpoint: AtomicU64,
    injected: AtomicU64,
    other_error: AtomicU64,
}

/// Whether a fault stage's injected error is behind `error` (itself, or the last attempt's
/// error of a retry stage that gave up).
fn injected(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<tower_prism::fault::Error>() {
            return true;
        }
        next = e.source();
    }
    false
}

impl Tally {
    fn take(&self) -> [u64; 8] {
        [
            &self.sent,
            &self.ok,
            &self.upstream_error,
            &self.rate_limited,
            &self.circuit_open,
            &self.no_endpoint,
            &self.injected,
            &self.other_error,
        ]
        .map(|c| c.swap(0, Ordering::Relaxed))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstreams = [
        Upstream::start("alpha").await,
        Upstream::start("bravo").await,
        Upstream::start("charlie").await,
    ];
    println!("upstreams:");
    for up in &upstreams {
        println!("  {:<8} http://{}", up.name(), up.addr());
    }
    println!("policy (TOML):{POLICY}");

    let config = ReliabilityConfig::from_toml(POLICY)?;
    let layer = ReliabilityLayer::from_config_as(&config, "chaos", Classified(classify))?;
    let balance = layer
        .balancer::<&'static str, HttpEndpoint, Get>()
        .endpoints(
            upstreams
                .iter()
                .map(|u| (u.name(), HttpEndpoint::new(u.addr()))),
        )
        .build()?;
    let endpoints = balance.handle().clone();
    let service = layer.balanced(balance);

    let tally = Arc::new(Tally::default());
    let totals = Arc::new(Tally::default());
    let driver = {
        let tally = tally.clone();
        let totals = totals.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_micros(1_000_000 / OFFERED_PER_SECOND));
            let mut in_flight = tokio::task::JoinSet::new();
            let end = tokio::time::Instant::now() + Duration::from_secs(SECONDS);
            while tokio::time::Instant::now() < end {
                tick.tick().await;
                let service = service.clone();
                let (tally, totals) = (tally.clone(), totals.clone());
                in_flight.spawn(async move {
                    let result = service.oneshot(Get("/work")).await;
                    let kind = match &result {
                        Ok(reply) if reply.status.is_success() => None,
                        Ok(_) => Some(ErrorKind::Inner),
                        Err(_) => None,
                    };
                    let was_injected = result.as_ref().err().is_some_and(|e| injected(&**e));
                    let error = result.err().map(Error::from_box).map(|e| e.kind());
                    for t in [&*tally, &*totals] {
                        t.sent.fetch_add(1, Ordering::Relaxed);
                        let counter = match (error, kind) {
                            (None, None) => &t.ok,
                            (None, Some(_)) => &t.upstream_error,
                            (Some(ErrorKind::RateLimited), _) => &t.rate_limited,
                            (Some(ErrorKind::CircuitOpen), _) => &t.circuit_open,
                            (Some(ErrorKind::NoHealthyEndpoint), _) => &t.no_endpoint,
                            (Some(_), _) if was_injected => &t.injected,
                            (Some(_), _) => &t.other_error,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
                while in_flight.try_join_next().is_some() {}
            }
            // Every request ends: wait for the last ones (each is bounded by the client's
            // connect timeout and the upstreams' latency).
            while in_flight.join_next().await.is_some() {}
        })
    };

    println!(
        "columns: admitted = passed the limiter; rejected = shed by the limiter, failed fast by"
    );
    println!(
        "an open circuit or for lack of a healthy endpoint; ok / 5xx / conn-err = outcomes of"
    );
    println!("admitted calls (after retries); faulted = injected faults the retries could not");
    println!(
        "hide; retried = retries sent; hedged = hedges sent/won; breaker = state at the tick.\n"
    );
    println!(
        "{:>4} {:>5} {:>8} {:>8} {:>5} {:>4} {:>8} {:>7} {:>7} {:>7} {:>9}  endpoints (requests this second; EJ = ejected)",
        "sec", "sent", "admitted", "rejected", "ok", "5xx", "conn-err", "faulted", "retried", "hedged", "breaker"
    );
    let mut last_requests: Vec<u64> = upstreams.iter().map(|u| u.requests()).collect();
    let mut events = Vec::new();
    let mut last_retries = 0;
    let mut last_hedges = (0, 0);
    let mut game_day_faults = 0;
    for second in 1..=SECONDS {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let [sent, ok, err5xx, limited, circuit, no_endpoint, faulted, other] = tally.take();
        let snapshot = endpoints.snapshot();
        let health: Vec<String> = upstreams
            .iter()
            .zip(&mut last_requests)
            .map(|(up, last)| {
                let now = up.requests();
                let delta = now - *last;
                *last = now;
                let state = snapshot
                    .endpoints
                    .iter()
                    .find(|e| e.key == up.name())
                    .map_or("?", |e| if e.healthy { "up" } else { "EJ" });
                let alive = if up.is_alive() { "" } else { "(dead)" };
                format!("{}:{state}{alive} {delta:>3}", up.name())
            })
            .collect();
        let rejected = limited + circuit + no_endpoint;
        let stages = layer.snapshot();
        let retries = stages.retry.as_ref().map_or(0, |r| r.retries);
        let retried = retries - last_retries;
        last_retries = retries;
        let hedges = stages
            .retry
            .as_ref()
            .map_or((0, 0), |r| (r.hedges_sent, r.hedges_won));
        let hedged = format!("{}/{}", hedges.0 - last_hedges.0, hedges.1 - last_hedges.1);
        last_hedges = hedges;
        let breaker = stages
            .circuit_breaker
            .as_ref()
            .map_or("-", |b| b.state.as_label());
        let admitted = sent - limited;
        println!(
            "{second:>4} {sent:>5} {admitted:>8} {rejected:>8} {ok:>5} {err5xx:>4} {other:>8} {faulted:>7} {retried:>7} {hedged:>7} {breaker:>9}  {}",
            health.join("  ")
        );
        // The script of faults.
        match second {
            2 => {
                upstreams[1].set_failing(true);
                events.push("t=2s  bravo starts answering 500");
            }
            4 => {
                upstreams[2].kill();
                events.push("t=4s  charlie dies (connections refused)");
            }
            6 => {
                upstreams[1].recover();
                events.push("t=6s  bravo recovers");
            }
            7 => {
                upstreams[2].revive().await?;
                events.push("t=7s  charlie comes back");
            }
            8 => {
                for up in &upstreams {
                    up.set_failing(true);
                }
                events.push("t=8s  all three answer 500 (an outage of the whole upstream)");
            }
            10 => {
                for up in &upstreams {
                    up.recover();
                }
                events.push("t=10s all three recover");
            }
            11 => {
                upstreams[0].set_latency(Duration::from_millis(400));
                events.push("t=11s alpha turns 400 ms slow (hedges to the others win)");
            }
            13 => {
                upstreams[0].recover();
                events.push("t=13s alpha is fast again");
            }
            14 => {
                let game_day = format!("{POLICY}{GAME_DAY}");
                layer.reconfigure(ReliabilityConfig::from_toml(&game_day)?.get("chaos")?)?;
                events.push("t=14s game day: a reload adds [fault] error = 0.2");
            }
            16 => {
                game_day_faults = layer.snapshot().fault.map_or(0, |f| f.injected_errors);
                layer.reconfigure(config.get("chaos")?)?;
                events.push("t=16s the game day ends: a reload removes [fault]");
            }
            _ => {}
        }
    }
    driver.await?;

    let [sent, ok, err5xx, limited, circuit, no_endpoint, faulted, other] = totals.take();
    println!("\nfaults injected:");
    for e in events {
        println!("  {e}");
    }
    println!("\nsummary over {SECONDS}s ({OFFERED_PER_SECOND}/s offered, 200/s admitted):");
    println!("  sent                      {sent}");
    println!("  answered 2xx              {ok}");
    println!("  answered 5xx (upstream)   {err5xx}");
    println!("  shed by the rate limiter  {limited}");
    println!("  failed fast, circuit open {circuit}");
    println!("  no healthy endpoint       {no_endpoint}");
    println!("  injected faults, unhidden {faulted}");
    println!("  connection errors         {other}");
    let accounted = ok + err5xx + limited + circuit + no_endpoint + faulted + other;
    println!("  accounted for             {accounted} of {sent} (nothing lost, nothing hung)");
    let snapshot = endpoints.snapshot();
    for e in &snapshot.endpoints {
        println!(
            "  endpoint {:<8} requests {:>5}  failures {:>4}  ejections {}",
            e.key, e.requests, e.failures, e.ejections
        );
    }
    let stages = layer.snapshot();
    if let Some(r) = stages.retry {
        println!(
            "  hedges sent {}, won {} (the first answer wins; the slower attempt is cancelled)",
            r.hedges_sent, r.hedges_won
        );
    }
    println!("  faults the game day injected {game_day_faults} (each attempt draws its own)");
    if let Some(d) = stages.deadline {
        println!("  deadline expired          {} (timeout 2 s)", d.expired);
    }
    if accounted != sent {
        return Err("some requests were not accounted for".into());
    }
    Ok(())
}
