//! The comparison's results and their markdown: one table of every figure (median with min
//! and max over runs) per dataplane, ferroplane's ratios to each other dataplane, the notes
//! each run left, the method and the machine.
//!
//! Invariants: a figure with no value (a failed or skipped workload) shows as "–", never as
//! 0; ratios are ferroplane's median over the other's, with a column saying which direction
//! is better.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::Dataplane;
use super::machine::Machine;
use super::metrics::MetricDef;
use super::session::{Options, Workloads};
use super::stats::Summary;
use super::udp_rate::Trial;

/// Everything measured for one dataplane.
#[derive(Clone, Debug)]
pub struct DataplaneResult {
    pub dataplane: Dataplane,
    /// Per-run values by metric key.
    pub values: BTreeMap<String, Vec<f64>>,
    pub notes: Vec<String>,
    pub error: Option<String>,
    /// Each run's unpaced UDP trial.
    pub unpaced: Vec<Trial>,
}

impl DataplaneResult {
    pub fn new(dataplane: Dataplane) -> DataplaneResult {
        DataplaneResult {
            dataplane,
            values: BTreeMap::new(),
            notes: Vec::new(),
            error: None,
            unpaced: Vec::new(),
        }
    }

    pub fn push(&mut self, key: &str, value: f64) {
        self.values.entry(key.to_owned()).or_default().push(value);
    }

    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    pub fn summary(&self, key: &str) -> Option<Summary> {
        self.values.get(key).and_then(|v| Summary::of(v))
    }
}

/// The whole comparison.
pub struct Comparison {
    pub runs: usize,
    pub quick: bool,
    pub load_cpu: usize,
    pub dataplane_cpu: usize,
    pub workloads: Workloads,
    pub metrics: Vec<MetricDef>,
    pub results: Vec<DataplaneResult>,
    pub machine: Machine,
}

impl Comparison {
    pub fn new(options: &Options, workloads: &Workloads) -> Comparison {
        Comparison {
            runs: options.runs,
            quick: options.quick,
            load_cpu: options.load_cpu,
            dataplane_cpu: options.dataplane_cpu,
            workloads: workloads.clone(),
            metrics: super::metrics::metric_defs(&workloads.scales),
            results: Vec::new(),
            machine: Machine::describe(),
        }
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## ferroplane vs the kernel path vs OVS userspace, same topology, same cores\n\n\
             {} on {}. {} run(s) per figure{}: median, with [min – max] over the runs. \
             Load tools on cpu {}, dataplane on cpu {} (see Method).\n",
            self.machine.date,
            self.machine.summary(),
            self.runs,
            if self.quick {
                " (--quick: shorter trials)"
            } else {
                ""
            },
            self.load_cpu,
            self.dataplane_cpu
        );
        self.figures(&mut out);
        self.ratios(&mut out);
        self.notes(&mut out);
        out.push_str(&super::method::text(self));
        out
    }

    fn figures(&self, out: &mut String) {
        let _ = write!(out, "| workload | unit |");
        for r in &self.results {
            let _ = write!(out, " {} |", r.dataplane.label());
        }
        let _ = write!(out, "\n|---|---|");
        for _ in &self.results {
            out.push_str("--:|");
        }
        out.push('\n');
        for metric in &self.metrics {
            let _ = write!(out, "| {} | {} |", metric.label.trim_start(), metric.unit);
            for r in &self.results {
                let cell = r.summary(&metric.key).map_or_else(
                    || "–".to_owned(),
                    |s| {
                        if s.runs == 1 {
                            number(s.median, metric.decimals)
                        } else {
                            format!(
                                "{} [{} – {}]",
                                number(s.median, metric.decimals),
                                number(s.min, metric.decimals),
                                number(s.max, metric.decimals)
                            )
                        }
                    },
                );
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }

    fn ratios(&self, out: &mut String) {
        let ours: Vec<&DataplaneResult> = self
            .results
            .iter()
            .filter(|r| r.dataplane.is_ferroplane())
            .collect();
        let theirs: Vec<&DataplaneResult> = self
            .results
            .iter()
            .filter(|r| !r.dataplane.is_ferroplane())
            .collect();
        if ours.is_empty() || theirs.is_empty() {
            return;
        }
        let _ = write!(
            out,
            "Ratios of medians, ferroplane / other:\n\n| workload | better |"
        );
        for a in &ours {
            for b in &theirs {
                let _ = write!(out, " {} / {} |", short(a.dataplane), short(b.dataplane));
            }
        }
        let _ = write!(out, "\n|---|---|");
        for _ in 0..ours.len() * theirs.len() {
            out.push_str("--:|");
        }
        out.push('\n');
        for metric in &self.metrics {
            let better = if metric.higher_is_better {
                "higher"
            } else {
                "lower"
            };
            let _ = write!(out, "| {} | {better} |", metric.label.trim_start());
            for a in &ours {
                for b in &theirs {
                    let ratio = match (a.summary(&metric.key), b.summary(&metric.key)) {
                        (Some(x), Some(y)) if y.median > 0.0 => {
                            format!("{:.2}", x.median / y.median)
                        }
                        _ => "–".to_owned(),
                    };
                    let _ = write!(out, " {ratio} |");
                }
            }
            out.push('\n');
        }
        out.push('\n');
    }

    fn notes(&self, out: &mut String) {
        out.push_str("### Per dataplane\n\n");
        for r in &self.results {
            let _ = writeln!(out, "- **{}**", r.dataplane.label());
            if let Some(error) = &r.error {
                let _ = writeln!(out, "  - FAILED: {error}");
            }
            for t in &r.unpaced {
                let _ = writeln!(
                    out,
                    "  - unpaced UDP trial: {} pps offered, {} delivered ({:.1}% lost)",
                    number(t.sent_rate(), 0),
                    number(t.delivered_rate(), 0),
                    t.loss() * 100.0
                );
            }
            for note in &r.notes {
                let _ = writeln!(out, "  - {note}");
            }
        }
        out.push('\n');
    }
}

/// The short name used in ratio headings.
pub fn short(dataplane: Dataplane) -> &'static str {
    match dataplane {
        Dataplane::Ferroplane(testbed::run_state::Io::AfPacket) => "fp AF_PACKET",
        Dataplane::Ferroplane(testbed::run_state::Io::Tap) => "fp TAP",
        Dataplane::Ferroplane(testbed::run_state::Io::AfXdp) => "fp AF_XDP",
        Dataplane::Iptables => "iptables",
        Dataplane::Nftables => "nftables",
        Dataplane::Ovs => "OVS",
    }
}

/// `value` with `decimals` decimals and thousands separated by commas.
pub fn number(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
    let mut grouped = String::new();
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if value < 0.0 && value.abs() >= 0.5 * 10f64.powi(-(decimals as i32)) {
        "-"
    } else {
        ""
    };
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(number(1_234_567.0, 0), "1,234,567");
        assert_eq!(number(999.0, 0), "999");
        assert_eq!(number(12.345, 2), "12.35");
        assert_eq!(number(1234.5, 1), "1,234.5");
        assert_eq!(number(-1500.0, 0), "-1,500");
        assert_eq!(number(0.0, 1), "0.0");
    }
}
