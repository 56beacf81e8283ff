//! The Grafana dashboard in `deploy/grafana/` may only query metrics the node exports: every
//! metric name in its expressions (and its variables' queries) must be one `/metrics` renders,
//! read from the renderer's own output (`# TYPE` lines), histograms with their `_bucket`,
//! `_sum` and `_count` series.

use std::collections::BTreeMap;

use dataplane::tables::conntrack::CtStats;
use dataplane::worker::WorkerReport;
use serde_json::Value;

use super::ports::PortNames;
use super::render::{MetricsInput, metrics};
use crate::sync::metrics::SyncMetrics;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/grafana/ferroplane-node.json"
);

/// Metric name -> type, as `/metrics` declares them for a node that has synced once.
fn exported() -> BTreeMap<String, String> {
    let sync = SyncMetrics {
        last_sync_timestamp: Some(1.0),
        ..SyncMetrics::default()
    };
    let reports = [WorkerReport::default()];
    let text = metrics(&MetricsInput {
        reports: &reports,
        names: &PortNames::default(),
        conntrack: CtStats::default(),
        conntrack_capacity: 1,
        adopted_flows: 0,
        generation: 1,
        sync: &sync,
        monitor_lost: 0,
        capture_lost: 0,
    });
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// The metric names an expression uses (identifiers with our prefixes, outside quoted
/// label values).
fn metric_names(expr: &str) -> Vec<String> {
    let unquoted: String = expr
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect::<Vec<_>>()
        .join(" ");
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    unquoted
        .split(|c: char| !is_ident(c))
        .filter(|token| token.starts_with("ferroplane_") || token.starts_with("kubeproxy_"))
        .map(str::to_owned)
        .collect()
}

fn exported_as(name: &str, exported: &BTreeMap<String, String>) -> bool {
    if exported.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| exported.get(base))
            .is_some_and(|kind| kind == "histogram")
    })
}

/// Every PromQL expression of the dashboard: panel targets and variable queries.
fn expressions(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(expr.to_owned());
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] == "query"
            && let Some(query) = variable["query"].as_str()
        {
            out.push(query.to_owned());
        }
    }
    out
}

#[test]
fn every_dashboard_expression_names_an_exported_metric() {
    let text = std::fs::read_to_string(DASHBOARD).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    let dashboard: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    let exported = exported();
    assert!(
        exported.contains_key("ferroplane_drops_total"),
        "the renderer's output was not read: {exported:?}"
    );
    let expressions = expressions(&dashboard);
    assert!(expressions.len() >= 9, "{expressions:?}");
    let mut missing = Vec::new();
    for expr in &expressions {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "{expr:?} names no ferroplane/kube-proxy metric"
        );
        missing.extend(
            names
                .into_iter()
                .filter(|name| !exported_as(name, &exported))
                .map(|name| format!("{name} (in {expr})")),
        );
    }
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not export:\n{}\nexported: {:?}",
        missing.join("\n"),
        exported.keys().collect::<Vec<_>>()
    );
}

#[test]
fn the_name_check_sees_histogram_series_and_rejects_unknown_names() {
    let mut exported = BTreeMap::new();
    exported.insert("a_seconds".to_owned(), "histogram".to_owned());
    exported.insert("b_total".to_owned(), "counter".to_owned());
    assert!(exported_as("a_seconds_bucket", &exported));
    assert!(exported_as("b_total", &exported));
    assert!(!exported_as("b_total_count", &exported));
    assert!(!exported_as("c_total", &exported));
    assert_eq!(
        metric_names(
            "histogram_quantile(0.9, sum by (le) (rate(kubeproxy_x_bucket{a=\"ferroplane_no\"}[5m])))"
        ),
        ["kubeproxy_x_bucket"]
    );
}
