//! The soak's report: a row per minute (requests and failures by kind, long-lived connections
//! lost, changes made, and each node's RSS, fds, threads and flows at the minute's end), the
//! verdict's rules, as a table for people and as JSON (everything) and CSV (the samples) for
//! plots.
//!
//! Invariant: the table and the files are made from the same rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::record::{Recorded, Traffic};
use super::sample::Sample;
use super::verdict::{Bounds, Growth, Verdict};
use crate::error::{Result, context};

#[derive(Clone, Debug, Serialize)]
pub struct NodeAtMinute {
    pub node: String,
    pub pid: u32,
    pub rss_mib: Option<f64>,
    pub rss_anon_mib: Option<f64>,
    pub fds: Option<u64>,
    pub threads: Option<u64>,
    pub flows: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Minute {
    pub minute: u64,
    pub requests: BTreeMap<&'static str, u64>,
    /// "traffic/kind" -> failures inside a disruptive change's window.
    pub failures_in_windows: BTreeMap<String, u64>,
    /// "traffic/kind" -> failures outside every window (each one fails the verdict).
    pub failures_outside: BTreeMap<String, u64>,
    pub held_lost: u64,
    pub changes: Vec<String>,
    pub nodes: Vec<NodeAtMinute>,
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0)
}

/// One row per minute of the soak (`minutes` of them).
pub fn minutes(recorded: &Recorded, samples: &[Sample], count: u64) -> Vec<Minute> {
    (0..count)
        .map(|minute| {
            let within = |at_ms: u64| at_ms / 60_000 == minute;
            let requests = recorded
                .requests
                .get(&minute)
                .map(|r| r.iter().map(|(t, n)| (t.name(), *n)).collect())
                .unwrap_or_default();
            let mut failures_in_windows = BTreeMap::new();
            let mut failures_outside = BTreeMap::new();
            for f in recorded.failures.iter().filter(|f| within(f.at_ms)) {
                let key = format!("{}/{}", f.traffic.name(), f.kind);
                let book = if f.window.is_some() {
                    &mut failures_in_windows
                } else {
                    &mut failures_outside
                };
                *book.entry(key).or_insert(0) += 1;
            }
            let held_lost = recorded
                .held
                .iter()
                .filter(|h| h.lost_at_ms.is_some_and(within))
                .count() as u64;
            let changes = recorded
                .windows
                .iter()
                .filter(|w| within(w.start_ms))
                .map(|w| w.change.clone())
                .collect();
            let mut last: BTreeMap<&str, &Sample> = BTreeMap::new();
            for s in samples.iter().filter(|s| within(s.at_ms)) {
                last.insert(&s.node, s);
            }
            let nodes = last
                .values()
                .map(|s| NodeAtMinute {
                    node: s.node.clone(),
                    pid: s.pid,
                    rss_mib: mib(s.rss_kib),
                    rss_anon_mib: mib(s.rss_anon_kib),
                    fds: s.fds,
                    threads: s.threads,
                    flows: s.flows,
                })
                .collect();
            Minute {
                minute,
                requests,
                failures_in_windows,
                failures_outside,
                held_lost,
                changes,
                nodes,
            }
        })
        .collect()
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn kinds(book: &BTreeMap<String, u64>) -> String {
    book.iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The per-minute table and the verdict, for stdout.
pub fn table(rows: &[Minute], verdict: &Verdict) -> String {
    let mut out = String::new();
    let node_names: Vec<String> = rows
        .iter()
        .flat_map(|r| r.nodes.iter().map(|n| n.node.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let _ = write!(
        out,
        "{:>3} {:>7} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6} {:>4}",
        "min", "new-tcp", "udp", "dns", "held", "intr", "fail", "unexp", "lost"
    );
    for node in &node_names {
        let _ = write!(
            out,
            " | {node:<6} {:>6} {:>6} {:>4} {:>4} {:>6}",
            "rss", "anon", "fds", "thr", "flows"
        );
    }
    let _ = writeln!(out, " | failures by kind (outside windows: !)");
    for row in rows {
        let count = |t: Traffic| row.requests.get(t.name()).copied().unwrap_or(0);
        let failed: u64 = row.failures_in_windows.values().sum();
        let outside: u64 = row.failures_outside.values().sum();
        let _ = write!(
            out,
            "{:>3} {:>7} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6} {:>4}",
            row.minute,
            count(Traffic::NewTcp),
            count(Traffic::Udp),
            count(Traffic::Dns),
            count(Traffic::Held),
            count(Traffic::Intruder),
            failed,
            outside,
            row.held_lost
        );
        for name in &node_names {
            match row.nodes.iter().find(|n| &n.node == name) {
                Some(n) => {
                    let _ = write!(
                        out,
                        " | {:<6} {:>6} {:>6} {:>4} {:>4} {:>6}",
                        n.pid,
                        opt(n.rss_mib),
                        opt(n.rss_anon_mib),
                        opt(n.fds),
                        opt(n.threads),
                        opt(n.flows)
                    );
                }
                None => {
                    let _ = write!(
                        out,
                        " | {:<6} {:>6} {:>6} {:>4} {:>4} {:>6}",
                        "-", "-", "-", "-", "-", "-"
                    );
                }
            }
        }
        let mut text = kinds(&row.failures_in_windows);
        if !row.failures_outside.is_empty() {
            let _ = write!(text, " ! {}", kinds(&row.failures_outside));
        }
        let _ = writeln!(out, " | {}", text.trim());
        // No trailing blank when the minute had no failure.
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "(node columns: pid, RSS and anonymous RSS in MiB, open fds, threads, flow-table entries at the minute's last sample)"
    );
    let _ = writeln!(
        out,
        "\nverdict: {}",
        if verdict.pass { "PASS" } else { "FAIL" }
    );
    for rule in &verdict.rules {
        let _ = writeln!(
            out,
            "  [{}] {}\n         {}",
            if rule.pass { "ok" } else { "FAIL" },
            rule.rule,
            rule.seen
        );
    }
    out
}

#[derive(Serialize)]
pub struct Document<'a> {
    pub prefix: &'a str,
    pub duration_s: u64,
    pub step_s: u64,
    pub started_unix_ms: u64,
    pub bounds: Bounds,
    pub verdict: &'a Verdict,
    pub minutes: &'a [Minute],
    pub growth: &'a [Growth],
    pub changes: &'a [super::record::Window],
    pub failures: &'a [super::record::Failure],
    pub held: &'a [super::record::HeldConnection],
    pub samples: &'a [Sample],
}

/// Writes the JSON document to `path` and the samples as CSV beside it (`.csv`).
pub fn write(path: &Path, document: &Document<'_>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(context(dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(document)?).map_err(context(path.display()))?;
    let csv_path = path.with_extension("csv");
    let mut csv =
        String::from("at_ms,node,pid,rss_kib,rss_anon_kib,fds,threads,flows,flow_insert_failed\n");
    let cell = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for s in document.samples {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            s.at_ms,
            s.node,
            s.pid,
            cell(s.rss_kib),
            cell(s.rss_anon_kib),
            cell(s.fds),
            cell(s.threads),
            cell(s.flows),
            cell(s.flow_insert_failed)
        );
    }
    std::fs::write(&csv_path, csv).map_err(context(csv_path.display()))
}
