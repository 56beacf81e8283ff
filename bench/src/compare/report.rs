//! The comparison's results and their markdown: one table of every figure (median with min
//! and max over runs) per dataplane, ferroplane's ratios to each other dataplane, the latency
//! goal (ferroplane against the faster kernel row, per background load), the notes each run
//! left, the method and the machine.
//!
//! Invariants: a figure with no value (a failed or skipped workload) shows as "–", never as
//! 0; ratios are ferroplane's median over the other's, with a column saying which direction
//! is better; the goal's kernel figure is the lowest median among the kernel rows, named.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::Dataplane;
use super::distribution::Distribution;
use super::hogs::Load;
use super::machine::Machine;
use super::metrics::{LatencyKind, MetricDef, latency_key};
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
    /// Latency samples of every run, pooled, by workload and load.
    pub samples: BTreeMap<String, Vec<f64>>,
}

impl DataplaneResult {
    pub fn new(dataplane: Dataplane) -> DataplaneResult {
        DataplaneResult {
            dataplane,
            values: BTreeMap::new(),
            notes: Vec::new(),
            error: None,
            unpaced: Vec::new(),
            samples: BTreeMap::new(),
        }
    }

    pub fn extend_samples(&mut self, key: &str, samples: &[f64]) {
        self.samples
            .entry(key.to_owned())
            .or_default()
            .extend_from_slice(samples);
    }

    /// The pooled samples of `key` as a distribution (empty if none).
    pub fn distribution(&self, key: &str) -> Distribution {
        Distribution::new(self.samples.get(key).cloned().unwrap_or_default())
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
    pub hog_cpus: Vec<usize>,
    pub testbed: bool,
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
            hog_cpus: options.hog_cpus.clone(),
            testbed: options.testbed,
            workloads: workloads.clone(),
            metrics: super::metrics::metric_defs(&workloads.scales, options.testbed),
            results: Vec::new(),
            machine: Machine::describe(),
        }
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let title = if self.testbed {
            "The testbed's demo cluster vs the kernel path, latency and bulk TCP"
        } else {
            "ferroplane vs the kernel path vs OVS userspace, same topology, same cores"
        };
        let _ = writeln!(
            out,
            "## {title}\n\n\
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
        self.latency_goal(&mut out);
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
                let _ = write!(out, " {} / {} |", a.dataplane.short(), b.dataplane.short());
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

    /// Per ferroplane row, latency workload and load: p50 and p99 against the faster kernel
    /// row's (the goal: p99 ratio <= 1.0, p50 ratio <= 1.5).
    fn latency_goal(&self, out: &mut String) {
        let kernels: Vec<&DataplaneResult> = self
            .results
            .iter()
            .filter(|r| r.dataplane.is_kernel())
            .collect();
        let ours: Vec<&DataplaneResult> = self
            .results
            .iter()
            .filter(|r| r.dataplane.is_ferroplane())
            .collect();
        if kernels.is_empty() || ours.is_empty() {
            return;
        }
        out.push_str(
            "Latency goal: ferroplane's p99 <= 1.0x and p50 <= 1.5x the faster kernel row's \
             (lowest median among the kernel rows, named), idle and under the same background \
             load:\n\n\
             | latency | load | ferroplane | p50 µs | faster kernel p50 µs | p50 ratio | \
             p99 µs | faster kernel p99 µs | p99 ratio | goal met |\n\
             |---|---|---|--:|--:|--:|--:|--:|--:|---|\n",
        );
        for kind in LatencyKind::ALL {
            for load in Load::ALL {
                let p50 = latency_key(kind, load, "p50");
                let p99 = latency_key(kind, load, "p99");
                for r in &ours {
                    let (a50, k50, q50) = goal_cells(r, &kernels, &p50);
                    let (a99, k99, q99) = goal_cells(r, &kernels, &p99);
                    let met = match (q50, q99) {
                        (Some(x), Some(y)) => {
                            if x <= 1.5 && y <= 1.0 {
                                "yes"
                            } else {
                                "no"
                            }
                        }
                        _ => "–",
                    };
                    let ratio =
                        |q: Option<f64>| q.map_or_else(|| "–".to_owned(), |q| format!("{q:.2}"));
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {a50} | {k50} | {} | {a99} | {k99} | {} | {met} |",
                        kind.label(),
                        load.label(),
                        r.dataplane.short(),
                        ratio(q50),
                        ratio(q99)
                    );
                }
            }
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

/// ferroplane's median of `key`, the faster kernel row's (with its name) and their ratio.
fn goal_cells(
    ours: &DataplaneResult,
    kernels: &[&DataplaneResult],
    key: &str,
) -> (String, String, Option<f64>) {
    let mine = ours.summary(key).map(|s| s.median);
    let fastest = kernels
        .iter()
        .filter_map(|k| Some((k.summary(key)?.median, k.dataplane.short())))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let ratio = match (mine, &fastest) {
        (Some(m), Some((k, _))) if *k > 0.0 => Some(m / k),
        _ => None,
    };
    (
        mine.map_or_else(|| "–".to_owned(), |m| number(m, 1)),
        fastest.map_or_else(
            || "–".to_owned(),
            |(k, name)| format!("{} ({name})", number(k, 1)),
        ),
        ratio,
    )
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
    fn the_goal_compares_with_the_faster_kernel_row() {
        use crate::compare::KernelRx;
        use crate::compare::kernel::ProxyMode;
        let mut ours = DataplaneResult::new(Dataplane::Testbed(
            testbed::run_state::Io::Tap,
            None,
            Default::default(),
        ));
        let mut steered = DataplaneResult::new(Dataplane::Kernel {
            mode: ProxyMode::Iptables,
            rx: KernelRx::Steered,
        });
        let mut plain = DataplaneResult::new(Dataplane::Kernel {
            mode: ProxyMode::Iptables,
            rx: KernelRx::Default,
        });
        for (result, values) in [
            (&mut ours, [90.0, 110.0, 100.0]),
            (&mut steered, [80.0, 80.0, 80.0]),
            (&mut plain, [50.0, 40.0, 60.0]),
        ] {
            for v in values {
                result.push("rr_idle_p50_us", v);
            }
        }
        let (mine, kernel, ratio) = goal_cells(&ours, &[&steered, &plain], "rr_idle_p50_us");
        assert_eq!(mine, "100.0");
        assert_eq!(kernel, "50.0 (iptables)");
        assert_eq!(ratio, Some(2.0));
        let (_, kernel, ratio) = goal_cells(&ours, &[&steered, &plain], "rr_idle_p99_us");
        assert_eq!((kernel.as_str(), ratio), ("–", None));
        ours.extend_samples("rr_idle", &[3.0, 1.0]);
        ours.extend_samples("rr_idle", &[2.0]);
        assert_eq!(ours.distribution("rr_idle").samples(), [1.0, 2.0, 3.0]);
        assert!(ours.distribution("setup_idle").is_empty());
    }

    #[test]
    fn the_markdown_has_the_latency_rows_the_goal_and_the_method() {
        use crate::compare::session::Options;
        use crate::compare::{KernelRx, kernel::ProxyMode};
        use testbed::run_state::Io;
        let kernel = Dataplane::Kernel {
            mode: ProxyMode::Iptables,
            rx: KernelRx::Default,
        };
        for testbed in [false, true] {
            let ours = if testbed {
                Dataplane::Testbed(Io::Tap, None, Default::default())
            } else {
                Dataplane::Ferroplane {
                    io: Io::Tap,
                    sched: None,
                    idle: None,
                }
            };
            let options = Options {
                runs: 1,
                quick: true,
                dataplanes: vec![ours, kernel],
                ferroplane: std::path::PathBuf::new(),
                load_cpu: 0,
                dataplane_cpu: 1,
                hog_cpus: vec![1],
                hog_program: std::path::PathBuf::new(),
                testbed,
                latency_only: false,
            };
            let workloads = Workloads::new(true);
            let mut comparison = Comparison::new(&options, &workloads);
            for (dataplane, p50) in [(ours, 60.0), (kernel, 50.0)] {
                let mut result = DataplaneResult::new(dataplane);
                result.push("rr_nice19_p50_us", p50);
                result.push("rr_nice19_p99_us", p50 * 2.0);
                result.extend_samples("rr_nice19", &[p50, p50 * 2.0]);
                result.push("bulk_gbps_8_rev", p50 / 10.0);
                result.push("bulk_cpu_s_per_gb_8_rev", p50 / 100.0);
                comparison.results.push(result);
            }
            let text = comparison.to_markdown();
            assert!(
                text.contains(
                    "| UDP request/response latency, 2 busy loops at nice 19, p99.9 | µs | – | – |"
                ),
                "{text}"
            );
            assert!(
                text.contains("| UDP request/response | 2 busy loops at nice 19 | "),
                "{text}"
            );
            assert!(
                text.contains(
                    "| 60.0 | 50.0 (iptables) | 1.20 | 120.0 | 100.0 (iptables) | 1.20 | no |"
                ),
                "{text}"
            );
            assert_eq!(text.contains("--testbed"), testbed, "{text}");
            assert!(
                text.contains(
                    "| Bulk TCP (iperf3), 8 streams, backend to client | Gbit/s | 6.00 | 5.00 |\n\
                     | CPU per GB received (busy time of both CPUs) | CPU s | 0.60 | 0.50 |\n"
                ),
                "{text}"
            );
            assert!(
                text.contains(
                    "| Bulk TCP (iperf3), 8 streams, backend to client | higher | 1.20 |"
                )
            );
            assert!(text.contains("machine load average (1 min) after the bulk runs"));
            assert!(text.contains("at nice 19"));
            let svg = crate::compare::chart::latency_svg(&comparison).unwrap();
            assert!(svg.contains("<svg") && svg.contains("testbed TAP") == testbed);
        }
    }

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
