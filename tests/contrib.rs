//! The Grafana dashboard and the Prometheus alerting rules under `contrib/` stay in step
//! with the metric names in core: every name they use is one core describes (a
//! histogram's `_bucket`, `_sum` and `_count` series by the histogram's name), counters
//! are only read through `rate`/`increase`, gauges never are, every core metric has a
//! panel, and the files are well formed. `promtool` checks the rules themselves
//! (`.ci/promtool`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

const DASHBOARD: &str = "contrib/grafana/tower-prism.json";
const ALERTS: &str = "contrib/prometheus/alerts.yml";
const HISTOGRAM_SERIES: [&str; 3] = ["_bucket", "_sum", "_count"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A recorder that only keeps what `describe_*` told it: each metric's kind.
#[derive(Default, Clone)]
struct Descriptions(Arc<Mutex<BTreeMap<String, Kind>>>);

impl Descriptions {
    fn note(&self, key: KeyName, kind: Kind) {
        let previous = self.0.lock().unwrap().insert(key.as_str().to_owned(), kind);
        assert!(previous.is_none(), "{} described twice", key.as_str());
    }
}

impl Recorder for Descriptions {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.note(key, Kind::Counter);
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.note(key, Kind::Gauge);
    }
    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.note(key, Kind::Histogram);
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Every metric core lists, with the kind its description gives it.
fn core_metrics() -> BTreeMap<String, Kind> {
    use tower_prism::metrics;
    let recorder = Descriptions::default();
    ::metrics::with_local_recorder(&recorder, metrics::describe);
    let described = recorder.0.lock().unwrap().clone();
    let listed: BTreeSet<&str> = [
        metrics::breaker::ALL,
        metrics::ratelimit::ALL,
        metrics::retry::ALL,
        metrics::balance::ALL,
        metrics::deadline::ALL,
        metrics::fallback::ALL,
        metrics::fault::ALL,
        metrics::config::ALL,
    ]
    .concat()
    .into_iter()
    .collect();
    let described_names: BTreeSet<&str> = described.keys().map(String::as_str).collect();
    assert_eq!(
        listed, described_names,
        "core's ALL lists and describe() disagree"
    );
    described
}

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One use of a metric in a query: the series name and what the query does with it.
#[derive(Debug)]
struct Use {
    series: String,
    /// Inside `rate(`, `irate(` or `increase(` (a range over a counter).
    in_rate: bool,
}

/// The metric names in `text`: tokens `prism_...` that do not continue another word
/// (`tower_prism_core` is a crate, not a metric).
fn uses(text: &str) -> Vec<Use> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find("prism_") {
        let start = at + offset;
        let mut end = start + "prism_".len();
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        at = end;
        if start > 0 && word(bytes[start - 1]) || end == start + "prism_".len() {
            continue; // a longer word, or the bare prefix of a regex (`prism_.+`)
        }
        let before = text[..start].trim_end();
        let in_rate = ["rate(", "increase("].iter().any(|f| before.ends_with(f));
        found.push(Use {
            series: text[start..end].to_owned(),
            in_rate,
        });
    }
    found
}

/// The core metric a series belongs to, and its kind, or why it belongs to none.
fn resolve<'a>(series: &str, core: &'a BTreeMap<String, Kind>) -> Result<(&'a str, Kind), String> {
    if let Some((name, kind)) = core.get_key_value(series) {
        return Ok((name, *kind));
    }
    for suffix in HISTOGRAM_SERIES {
        if let Some(base) = series.strip_suffix(suffix) {
            return match core.get_key_value(base) {
                Some((name, Kind::Histogram)) => Ok((name, Kind::Histogram)),
                Some(_) => Err(format!("{series}: {base} is not a histogram")),
                None => Err(format!("{series}: no such metric in core")),
            };
        }
    }
    Err(format!("{series}: no such metric in core"))
}

/// Checks the names used by `queries` (`(where, query)`), and returns the core metrics
/// they use, or every problem found.
fn check_queries<'a>(
    queries: &[(String, String)],
    core: &'a BTreeMap<String, Kind>,
) -> Result<BTreeSet<&'a str>, String> {
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (place, query) in queries {
        for u in uses(query) {
            match resolve(&u.series, core) {
                Err(why) => problems.push(format!("{place}: {why}")),
                Ok((name, kind)) => {
                    used.insert(name);
                    let histogram_rate = kind == Kind::Histogram && u.series != name;
                    match (kind, u.in_rate) {
                        (Kind::Counter, false) => problems.push(format!(
                            "{place}: counter {} read without rate()/increase()",
                            u.series
                        )),
                        (Kind::Gauge, true) => problems.push(format!(
                            "{place}: gauge {} inside rate()/increase()",
                            u.series
                        )),
                        (Kind::Histogram, _) if !histogram_rate => problems.push(format!(
                            "{place}: histogram {} without _bucket/_sum/_count",
                            u.series
                        )),
                        _ => {}
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(used)
    } else {
        Err(problems.join("\n"))
    }
}

/// The dashboard's queries, `(panel title, expr)`, after checking the panels' shape.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "{title}: id reused"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title}: wider than the grid");
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title}: no description"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "{title}: queries go through the datasource variable"
            );
            let expr = target["expr"].as_str().expect("expr").to_owned();
            // Config reloads are process-wide: their metrics carry no `name`.
            let per_policy = !expr.contains("prism_config_");
            assert!(
                !per_policy || expr.matches("prism_").count() == expr.matches("$name").count(),
                "{title}: every selector filters by the policy variable: {expr}"
            );
            queries.push((format!("panel {title:?}"), expr));
        }
    }
    queries
}

#[test]
fn the_dashboard_uses_core_names_and_shows_every_metric() {
    let core = core_metrics();
    let text = read(DASHBOARD);
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).expect("the dashboard is valid JSON");
    assert_eq!(dashboard["uid"], "tower-prism");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "name"]);

    let queries = dashboard_queries(&dashboard);
    let used = check_queries(&queries, &core).unwrap_or_else(|e| panic!("{e}"));
    let missing: Vec<&String> = core.keys().filter(|n| !used.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "metrics with no panel: {missing:?}");
    // Names in descriptions and other text must exist too (not only in queries).
    for u in uses(&text) {
        resolve(&u.series, &core).unwrap();
    }
}

/// One alerting rule of alerts.yml, read line by line (the file's shape is fixed:
/// `- alert:` items with `expr`, `for`, `labels`, `annotations`).
#[derive(Debug, Default)]
struct Rule {
    alert: String,
    expr: String,
    keys: BTreeSet<String>,
}

fn rules(text: &str) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut in_expr = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            rules.push(Rule {
                alert: name.trim().to_owned(),
                ..Rule::default()
            });
            in_expr = false;
            continue;
        }
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        let key = trimmed.split(':').next().unwrap_or("");
        let is_key = !key.contains(' ') && trimmed.contains(':') && !key.starts_with('(');
        // Inside an expression only the rule's own keys end it (a PromQL line may hold a
        // colon, in a recording rule's name).
        let rule_key = ["expr", "for", "labels", "annotations"].contains(&key);
        if is_key && (rule_key || !in_expr) {
            rule.keys.insert(key.to_owned());
            in_expr = key == "expr";
            if in_expr {
                rule.expr
                    .push_str(trimmed["expr:".len()..].trim_start_matches([' ', '|']));
            }
        } else if in_expr {
            if !rule.expr.is_empty() {
                rule.expr.push('\n');
            }
            rule.expr.push_str(trimmed);
        }
    }
    rules
}

#[test]
fn the_alerts_use_core_names_and_say_what_is_wrong() {
    let core = core_metrics();
    let text = read(ALERTS);
    let rules = rules(&text);
    assert!(rules.len() >= 6, "{rules:?}");
    let mut names = BTreeSet::new();
    let mut queries = Vec::new();
    for rule in &rules {
        assert!(names.insert(&rule.alert), "{} defined twice", rule.alert);
        for key in [
            "expr",
            "for",
            "labels",
            "severity",
            "annotations",
            "summary",
            "description",
        ] {
            assert!(rule.keys.contains(key), "{}: no {key}", rule.alert);
        }
        assert!(
            rule.expr.contains("prism_"),
            "{}: {:?}",
            rule.alert,
            rule.expr
        );
        queries.push((format!("alert {}", rule.alert), rule.expr.clone()));
    }
    let used = check_queries(&queries, &core).unwrap_or_else(|e| panic!("{e}"));
    for must in [
        "prism_breaker_state",
        "prism_retry_budget_exhausted_total",
        "prism_ratelimit_rejected_total",
        "prism_balance_endpoints_healthy",
        "prism_deadline_expired_total",
    ] {
        assert!(used.contains(must), "no alert on {must}");
    }
    for u in uses(&text) {
        resolve(&u.series, &core).unwrap();
    }
}

#[test]
fn the_checks_catch_what_they_are_for() {
    let core = core_metrics();
    let bad = |query: &str| check_queries(&[("t".into(), query.into())], &core).is_err();
    assert!(bad("rate(prism_breaker_failure_rate[5m])"), "an old name");
    assert!(bad("prism_breaker_calls_total"), "a counter without rate");
    assert!(bad("rate(prism_breaker_state[5m])"), "a gauge in rate");
    assert!(
        bad("rate(prism_breaker_state_bucket[5m])"),
        "buckets of a gauge"
    );
    assert!(bad("prism_retry_backoff_seconds"), "a bare histogram");
    assert!(!bad(
        "histogram_quantile(0.9, sum by (le) (rate(prism_retry_backoff_seconds_bucket[5m])))"
    ));
    assert!(!bad(
        "increase( prism_breaker_calls_total[5m]) + tower_prism_core"
    ));
    let rule =
        rules("  - alert: A\n    expr: |\n      rate(prism_x[1m])\n      > 0\n    for: 1m\n");
    assert_eq!(rule[0].expr, "rate(prism_x[1m])\n> 0");
    assert!(rule[0].keys.contains("for") && !rule[0].keys.contains("labels"));
}

/// A policy with every stage that needs no endpoints (the balancer's series are checked
/// by the balance crate's own metrics tests).
const EXPORTED_POLICY: &str = r#"
[policy.orders.rate_limit]
rate = 100
period = "1s"

[policy.orders.concurrency_limit]

[policy.orders.deadline]
timeout = "2s"

[policy.orders.circuit_breaker]
failure_rate_threshold = 0.5

[policy.orders.retry]
max_attempts = 2

[policy.orders.retry.hedge]
delay = "50ms"

[policy.orders.fault]
error = 0.0
"#;

/// What `metrics-exporter-prometheus`, set up as contrib/README.md says, writes for a
/// policy: the series the dashboard and the rules read, under the same names and labels.
#[tokio::test(start_paused = true)]
async fn the_exporter_writes_what_the_dashboard_reads() {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use tower::{service_fn, Layer, Service, ServiceExt};
    use tower_prism::{BoxError, ReliabilityConfig, ReliabilityLayer};

    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &[0.01, 0.1, 1.0])
        .unwrap()
        .build_recorder();
    let exporter = recorder.handle();
    let config = ReliabilityConfig::from_toml(EXPORTED_POLICY).unwrap();
    let layer = ::metrics::with_local_recorder(&recorder, || {
        ReliabilityLayer::from_config(&config, "orders").unwrap()
    });
    let mut svc = layer.layer(service_fn(|fail: bool| async move {
        if fail {
            Err::<(), BoxError>("down".into())
        } else {
            Ok(())
        }
    }));
    for fail in [false, true, false] {
        let _ = svc.ready().await.unwrap().call(fail).await;
    }
    let text = exporter.render();

    for line in [
        r#"prism_breaker_state{name="orders",state="closed"} 1"#,
        r#"prism_breaker_state{name="orders",state="open"} 0"#,
        r#"prism_breaker_state{name="orders",state="half_open"} 0"#,
        r#"prism_breaker_state{name="orders",state="forced_open"} 0"#,
        r#"prism_breaker_state{name="orders",state="disabled"} 0"#,
        r#"prism_breaker_state{name="orders",state="metrics_only"} 0"#,
        r#"prism_ratelimit_rate_per_second{name="orders"} 100"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
    }
    let core = core_metrics();
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut missing = Vec::new();
    for (_, expr) in dashboard_queries(&dashboard) {
        for u in uses(&expr) {
            let (name, _) = resolve(&u.series, &core).unwrap();
            let staged = ["breaker", "ratelimit", "retry", "deadline", "fault"]
                .iter()
                .any(|c| name.starts_with(&format!("prism_{c}_")));
            // Only the Redis limiter has a backend; a transition's counter is looked up
            // when the transition happens (a cold path), and none happened here.
            let lazy = [
                "prism_ratelimit_backend_errors_total",
                "prism_breaker_transitions_total",
            ];
            if staged && !lazy.contains(&name) && !text.contains(&format!("{}{{", u.series)) {
                missing.push(u.series);
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{text}");
}
