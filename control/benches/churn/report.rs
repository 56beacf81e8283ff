//! The churn benchmark's results: the runs and cold starts, memory per object, written as
//! JSON, a Markdown table (for the README) and an SVG chart (p99 latency per rate; RSS and
//! live heap over time).

use std::fmt::Write as _;
use std::path::Path;

use control::ClusterState;
use control::compile::{Compiler, NodeLocal, PortAssignments};
use control::model::{Kind, Object};
use serde_json::json;

use super::cluster::{self, Scale};
use super::measure;

/// One run: a source, a kind of change, a rate.
pub struct Run {
    pub source: String,
    pub kind: String,
    pub rate: u32,
    pub sent: u64,
    pub programmed: u64,
    pub syncs: u64,
    pub full_syncs: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// State directory only: from the commit's end (generation written) to the live table.
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    pub cpu_us_per_change: f64,
    /// `(seconds since the benchmark began, RSS bytes, live heap bytes)`, once a second.
    pub rss: Vec<(f64, u64, i64)>,
}

impl Run {
    pub fn line(&self) -> String {
        let (first, last) = (self.rss.first(), self.rss.last());
        format!(
            "{:<10} {:<9} {:>6}/s: sent {} programmed {} in {} syncs ({} full); latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms (from the commit: p50 {:.1} p99 {:.1}); {:.0} us CPU/change; RSS {} -> {} MiB",
            self.source,
            self.kind,
            self.rate,
            self.sent,
            self.programmed,
            self.syncs,
            self.full_syncs,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.commit_p50_ms,
            self.commit_p99_ms,
            self.cpu_us_per_change,
            first.map_or(0, |s| s.1 >> 20),
            last.map_or(0, |s| s.1 >> 20),
        )
    }
}

/// A source's start at full scale.
pub struct ColdStart {
    pub source: String,
    /// Writing the state directory / the recorded lists (not the node's work).
    pub setup_s: f64,
    /// From starting the source to the first published snapshot.
    pub start_s: f64,
    pub cpu_s: f64,
    /// Live heap the started source holds (state, compiler caches, snapshot, watch buffers).
    pub heap_bytes: i64,
    pub rss_bytes: i64,
    pub rss_total: u64,
    pub problems: usize,
}

impl ColdStart {
    pub fn line(&self) -> String {
        format!(
            "{:<10} cold start: {:.1} s to the first snapshot ({:.1} s CPU on the node's threads; setup {:.1} s); heap held {} MiB, RSS +{} MiB (process {} MiB); {} problems",
            self.source,
            self.start_s,
            self.cpu_s,
            self.setup_s,
            self.heap_bytes >> 20,
            self.rss_bytes >> 20,
            self.rss_total >> 20,
            self.problems
        )
    }
}

/// Bytes per object: held in the state, and added to the compiled tables.
pub struct Memory {
    /// `(what, count, state bytes each, compiled bytes each)`.
    pub rows: Vec<(String, usize, f64, f64)>,
}

fn add_objects(state: &mut ClusterState, scale: &Scale, collections: &[&str]) -> usize {
    let mut count = 0;
    cluster::for_each_object(scale, |collection, value| {
        if !collections.contains(&collection) {
            return;
        }
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.plural() == collection)
            .unwrap_or(Kind::Namespace);
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        if let Ok(object) = Object::from_json_slice(kind, &bytes) {
            state.insert(object);
            count += 1;
        }
    });
    count
}

/// Live heap of a full compile of `state` (compiler caches and the snapshot).
fn compiled_bytes(state: &ClusterState) -> i64 {
    let ports = PortAssignments::sequential(state, "n0000");
    let before = measure::live_heap();
    let mut compiler = Compiler::new("n0000", NodeLocal::default());
    let compiled = compiler.compile(state, &ports);
    let after = measure::live_heap();
    drop(compiled);
    drop(compiler);
    after - before
}

/// Adds the cluster kind by kind to one in-memory state, measuring what each kind adds to
/// the state and to the compiled tables.
pub fn memory_per_object(scale: &Scale) -> Memory {
    let mut state = ClusterState::new(cluster::settings());
    let mut rows = Vec::new();
    let mut compiled_prev = 0;
    for (what, collections, per) in [
        ("Node", &["namespaces", "nodes"][..], "nodes"),
        ("Service", &["services"][..], "services"),
        (
            "endpoint (slice entry + Pod)",
            &["pods", "endpointslices"][..],
            "endpoints",
        ),
        (
            "NetworkPolicy (one rule)",
            &["networkpolicies"][..],
            "policies",
        ),
    ] {
        let before = measure::live_heap();
        add_objects(&mut state, scale, collections);
        let state_bytes = measure::live_heap() - before;
        let compiled = compiled_bytes(&state);
        let count = match per {
            "nodes" => scale.nodes,
            "services" => scale.services,
            "endpoints" => scale.services * scale.per_service(),
            _ => scale.policies,
        };
        let each = |bytes: i64| bytes as f64 / count.max(1) as f64;
        rows.push((
            what.to_owned(),
            count,
            each(state_bytes),
            each(compiled - compiled_prev),
        ));
        eprintln!(
            "memory: {what}: {count} x ({:.0} B state + {:.0} B compiled)",
            each(state_bytes),
            each(compiled - compiled_prev)
        );
        compiled_prev = compiled;
    }
    Memory { rows }
}

fn ms(value: f64) -> String {
    if value.is_nan() {
        "-".to_owned()
    } else if value < 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn markdown(
    scale: &Scale,
    load: &str,
    memory: Option<&Memory>,
    colds: &[ColdStart],
    runs: &[Run],
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Scale: {} nodes, {} Services, {} endpoints, {} NetworkPolicies; load average at start: {}\n",
        scale.nodes,
        scale.services,
        scale.services * scale.per_service(),
        scale.policies,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        md,
        "| source | cold start | CPU | heap held | RSS growth |\n|---|---|---|---|---|"
    );
    for c in colds {
        let _ = writeln!(
            md,
            "| {} | {:.1} s | {:.1} s | {} MiB | {} MiB |",
            c.source,
            c.start_s,
            c.cpu_s,
            c.heap_bytes >> 20,
            c.rss_bytes >> 20
        );
    }
    let _ = writeln!(
        md,
        "\n| source | churn | rate | programmed / sent | syncs | p50 | p99 | max | commit -> live p50 / p99 | CPU per change | RSS start -> end |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in runs {
        let (first, last) = (r.rss.first(), r.rss.last());
        let _ = writeln!(
            md,
            "| {} | {} | {}/s | {} / {} | {} ({} full) | {} ms | {} ms | {} ms | {} / {} ms | {:.0} us | {} -> {} MiB |",
            r.source,
            r.kind,
            r.rate,
            r.programmed,
            r.sent,
            r.syncs,
            r.full_syncs,
            ms(r.p50_ms),
            ms(r.p99_ms),
            ms(r.max_ms),
            ms(r.commit_p50_ms),
            ms(r.commit_p99_ms),
            r.cpu_us_per_change,
            first.map_or(0, |s| s.1 >> 20),
            last.map_or(0, |s| s.1 >> 20)
        );
    }
    if let Some(memory) = memory {
        let _ = writeln!(
            md,
            "\n| object | count | state bytes each | compiled bytes each |\n|---|---|---|---|"
        );
        for (what, count, state, compiled) in &memory.rows {
            let _ = writeln!(md, "| {what} | {count} | {state:.0} | {compiled:.0} |");
        }
    }
    md
}

const COLORS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];

/// p99 latency per rate (grouped bars, log scale), and RSS over time.
fn svg(runs: &[Run]) -> String {
    let mut s = String::new();
    let (w, h) = (900.0, 640.0);
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    );
    // Panel 1: p99 per (source, kind) per rate, log10 ms from 0.1 to 10,000.
    let _ = writeln!(
        s,
        "<text x=\"20\" y=\"24\" font-size=\"15\">Programming latency p99 (event to live table), ms, log scale; dashed: 50 ms goal</text>"
    );
    let (x0, y0, pw, ph) = (70.0, 40.0, 800.0, 240.0);
    let y_of = |v: f64| {
        let l = v.max(0.1).log10();
        y0 + ph - (l + 1.0) / 5.0 * ph
    };
    for tick in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0] {
        let y = y_of(tick);
        let _ = writeln!(
            s,
            "<line x1=\"{x0}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{tick}</text>",
            x0 + pw,
            x0 - 6.0,
            y + 4.0
        );
    }
    let goal = y_of(50.0);
    let _ = writeln!(
        s,
        "<line x1=\"{x0}\" x2=\"{}\" y1=\"{goal:.1}\" y2=\"{goal:.1}\" stroke=\"#d62728\" stroke-dasharray=\"6,4\"/>",
        x0 + pw
    );
    let mut series: Vec<(String, String)> = Vec::new();
    for r in runs {
        let key = (r.source.clone(), r.kind.clone());
        if !series.contains(&key) {
            series.push(key);
        }
    }
    let mut rates: Vec<u32> = runs.iter().map(|r| r.rate).collect();
    rates.sort_unstable();
    rates.dedup();
    let group = pw / rates.len().max(1) as f64;
    let bar = group * 0.8 / series.len().max(1) as f64;
    for (gi, rate) in rates.iter().enumerate() {
        let gx = x0 + gi as f64 * group + group * 0.1;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{rate} changes/s</text>",
            gx + group * 0.4,
            y0 + ph + 16.0
        );
        for (si, key) in series.iter().enumerate() {
            let Some(r) = runs
                .iter()
                .find(|r| r.rate == *rate && r.source == key.0 && r.kind == key.1)
            else {
                continue;
            };
            let y = y_of(r.p99_ms);
            let _ = writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {} {}/s p99 {:.1} ms</title></rect><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                gx + si as f64 * bar,
                bar * 0.9,
                (y0 + ph - y).max(0.0),
                COLORS[si % COLORS.len()],
                r.source,
                r.kind,
                r.rate,
                r.p99_ms,
                gx + si as f64 * bar + bar * 0.45,
                y - 3.0,
                ms(r.p99_ms)
            );
        }
    }
    for (si, key) in series.iter().enumerate() {
        let _ = writeln!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{} / {}</text>",
            x0 + si as f64 * 200.0,
            y0 + ph + 26.0,
            COLORS[si % COLORS.len()],
            x0 + si as f64 * 200.0 + 14.0,
            y0 + ph + 35.0,
            key.0,
            key.1
        );
    }
    // Panel 2: RSS over time.
    let (x0, y0, pw, ph) = (70.0, 380.0, 800.0, 220.0);
    let _ = writeln!(
        s,
        "<text x=\"20\" y=\"{}\" font-size=\"15\">Process RSS (solid) and live heap (dotted) over the runs, MiB</text>",
        y0 - 16.0
    );
    let points: Vec<(f64, u64, i64, usize)> = runs
        .iter()
        .flat_map(|r| {
            let si = series.iter().position(|k| k.0 == r.source).unwrap_or(0);
            r.rss.iter().map(move |p| (p.0, p.1, p.2, si))
        })
        .collect();
    let t_max = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let m_max = points
        .iter()
        .map(|p| (p.1 as f64).max(p.2 as f64) / 1048576.0)
        .fold(1.0, f64::max)
        * 1.1;
    for i in 0..=4 {
        let v = m_max * f64::from(i) / 4.0;
        let y = y0 + ph - ph * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{x0}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            x0 + pw,
            x0 - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since the benchmark began ({t_max:.0} s)</text>",
        x0 + pw / 2.0,
        y0 + ph + 20.0
    );
    for (si, _) in series.iter().enumerate() {
        for (field, dash) in [(1, ""), (2, " stroke-dasharray=\"2,3\"")] {
            let path: Vec<String> = points
                .iter()
                .filter(|p| p.3 == si)
                .map(|p| {
                    let v = if field == 1 { p.1 as f64 } else { p.2 as f64 } / 1048576.0;
                    format!(
                        "{:.1},{:.1}",
                        x0 + p.0 / t_max * pw,
                        y0 + ph - v / m_max * ph
                    )
                })
                .collect();
            if !path.is_empty() {
                let _ = writeln!(
                    s,
                    "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{dash} points=\"{}\"/>",
                    COLORS[si % COLORS.len()],
                    path.join(" ")
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

pub fn write(
    out: &Path,
    scale: &Scale,
    load: &str,
    memory: Option<&Memory>,
    colds: &[ColdStart],
    runs: &[Run],
) {
    let json = json!({
        "scale": {"nodes": scale.nodes, "services": scale.services,
            "endpoints": scale.services * scale.per_service(), "policies": scale.policies},
        "load_average": load.trim(),
        "cold_starts": colds.iter().map(|c| json!({"source": c.source, "start_s": c.start_s,
            "cpu_s": c.cpu_s, "setup_s": c.setup_s, "heap_bytes": c.heap_bytes,
            "rss_growth_bytes": c.rss_bytes, "rss_bytes": c.rss_total, "problems": c.problems}))
            .collect::<Vec<_>>(),
        "runs": runs.iter().map(|r| json!({"source": r.source, "kind": r.kind, "rate": r.rate,
            "sent": r.sent, "programmed": r.programmed, "syncs": r.syncs, "full_syncs": r.full_syncs,
            "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "max_ms": r.max_ms,
            "commit_p50_ms": r.commit_p50_ms, "commit_p99_ms": r.commit_p99_ms,
            "cpu_us_per_change": r.cpu_us_per_change,
            "rss": r.rss.iter().map(|p| json!([p.0, p.1, p.2])).collect::<Vec<_>>()}))
            .collect::<Vec<_>>(),
        "memory_per_object": memory.map(|m| m.rows.iter().map(|(w, n, s, c)|
            json!({"object": w, "count": n, "state_bytes": s, "compiled_bytes": c}))
            .collect::<Vec<_>>()),
    });
    let _ = std::fs::write(
        out.join("churn.json"),
        serde_json::to_vec_pretty(&json).unwrap_or_default(),
    );
    let md = markdown(scale, load, memory, colds, runs);
    print!("{md}");
    let _ = std::fs::write(out.join("churn.md"), md);
    let _ = std::fs::write(out.join("churn.svg"), svg(runs));
}
