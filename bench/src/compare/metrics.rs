//! The figures of the comparison: the keys the session records values under, and the
//! table's rows (label, unit, which direction is better, decimals shown, whether the bar
//! chart has a panel for it).
//!
//! Invariant: every key is unique, and every row's key is one the session records.

use super::bulk::BulkCase;
use super::distribution::QUANTILES;
use super::hogs::Load;
use super::udp_rate::LOSS_LIMIT;

/// Which latency workload a latency key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyKind {
    /// UDP request/response through the ClusterIP.
    RoundTrip,
    /// TCP connect (to the SYN-ACK) through the ClusterIP, with the base Services.
    Setup,
}

impl LatencyKind {
    pub const ALL: [LatencyKind; 2] = [LatencyKind::RoundTrip, LatencyKind::Setup];

    fn key(self) -> &'static str {
        match self {
            LatencyKind::RoundTrip => "rr",
            LatencyKind::Setup => "setup",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            LatencyKind::RoundTrip => "UDP request/response",
            LatencyKind::Setup => "TCP connection setup",
        }
    }
}

/// The key of one quantile (a [`QUANTILES`] key) of a latency workload under `load`.
pub fn latency_key(kind: LatencyKind, load: Load, quantile: &str) -> String {
    format!("{}_{}_{quantile}_us", kind.key(), load.key())
}

/// The key of a latency workload's pooled samples under `load` (for the distribution chart).
pub fn samples_key(kind: LatencyKind, load: Load) -> String {
    format!("{}_{}", kind.key(), load.key())
}

/// The key of the 1-minute load average read after the latency runs under `load`.
pub fn load_average_key(load: Load) -> String {
    format!("loadavg1_{}", load.key())
}

/// The keys of the figures, as the session records them.
pub struct MetricKeys {
    pub udp_rate: String,
    pub cpu_per_million: String,
    pub cpu_load_cpu: String,
    pub cpu_dataplane_cpu: String,
    pub crr: String,
    pub bulk: Vec<BulkKeys>,
    /// The 1-minute load average read after the bulk runs.
    pub bulk_load: String,
    /// (p50, p99) per Service count.
    pub connect: Vec<(String, String)>,
}

/// The keys of one bulk case: its rate and its CPU per GB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkKeys {
    pub case: BulkCase,
    pub gbps: String,
    pub cpu_per_gb: String,
}

pub fn bulk_keys(case: BulkCase) -> BulkKeys {
    let suffix = case.key_suffix();
    BulkKeys {
        case,
        gbps: format!("bulk_gbps{suffix}"),
        cpu_per_gb: format!("bulk_cpu_s_per_gb{suffix}"),
    }
}

pub fn metric_keys(scales: &[usize]) -> MetricKeys {
    MetricKeys {
        udp_rate: "udp_pps".to_owned(),
        cpu_per_million: "cpu_s_per_mpkt".to_owned(),
        cpu_load_cpu: "cpu_load_cpu_s_per_mpkt".to_owned(),
        cpu_dataplane_cpu: "cpu_dataplane_cpu_s_per_mpkt".to_owned(),
        crr: "crr_per_s".to_owned(),
        bulk: BulkCase::ALL.iter().map(|&c| bulk_keys(c)).collect(),
        bulk_load: "loadavg1_bulk".to_owned(),
        connect: scales
            .iter()
            .map(|s| (format!("connect_p50_us_{s}"), format!("connect_p99_us_{s}")))
            .collect(),
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricDef {
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    pub decimals: usize,
    /// Whether the bar chart has a panel for it.
    pub chart: bool,
}

fn def(
    key: &str,
    label: String,
    unit: &'static str,
    higher_is_better: bool,
    decimals: usize,
) -> MetricDef {
    MetricDef {
        key: key.to_owned(),
        label,
        unit,
        higher_is_better,
        decimals,
        chart: false,
    }
}

/// The latency rows: per workload and load, every quantile, then the load averages.
pub fn latency_defs() -> Vec<MetricDef> {
    let mut defs = Vec::new();
    for kind in LatencyKind::ALL {
        for load in Load::ALL {
            for quantile in QUANTILES {
                let mut row = def(
                    &latency_key(kind, load, quantile.key),
                    format!(
                        "{} latency, {}, {}",
                        kind.label(),
                        load.label(),
                        quantile.label
                    ),
                    "µs",
                    false,
                    1,
                );
                row.chart = kind == LatencyKind::RoundTrip
                    && load == Load::Idle
                    && matches!(quantile.key, "p50" | "p99");
                defs.push(row);
            }
        }
    }
    for load in Load::ALL {
        defs.push(def(
            &load_average_key(load),
            format!(
                "machine load average (1 min) after the latency runs, {}",
                load.label()
            ),
            "",
            false,
            2,
        ));
    }
    defs
}

/// The bulk rows: per case its rate (charted for client to backend) and its CPU per GB,
/// then the load average after the bulk runs.
pub fn bulk_defs() -> Vec<MetricDef> {
    let mut defs = Vec::new();
    for case in BulkCase::ALL {
        let keys = bulk_keys(case);
        let mut rate = def(
            &keys.gbps,
            format!("Bulk TCP (iperf3), {}", case.label()),
            "Gbit/s",
            true,
            2,
        );
        rate.chart = !case.reverse;
        defs.push(rate);
        defs.push(def(
            &keys.cpu_per_gb,
            "  CPU per GB received (busy time of both CPUs)".to_owned(),
            "CPU s",
            false,
            2,
        ));
    }
    defs.push(def(
        "loadavg1_bulk",
        "machine load average (1 min) after the bulk runs".to_owned(),
        "",
        false,
        2,
    ));
    defs
}

/// The rows, in table order: every workload's (`testbed`: the latency and bulk rows alone).
pub fn metric_defs(scales: &[usize], testbed: bool) -> Vec<MetricDef> {
    if testbed {
        let mut defs = latency_defs();
        defs.extend(bulk_defs());
        return defs;
    }
    let keys = metric_keys(scales);
    let mut defs = vec![
        def(
            &keys.udp_rate,
            format!(
                "UDP 64 B frames, highest rate with < {}% loss",
                LOSS_LIMIT * 100.0
            ),
            "pps",
            true,
            0,
        ),
        def(
            &keys.cpu_per_million,
            "CPU per million packets at that rate (busy time of both CPUs)".to_owned(),
            "CPU s",
            false,
            2,
        ),
        def(
            &keys.cpu_load_cpu,
            "  of which the load CPU (generator, sinks, pods' socket stacks)".to_owned(),
            "CPU s",
            false,
            2,
        ),
        def(
            &keys.cpu_dataplane_cpu,
            "  of which the dataplane CPU (both nodes)".to_owned(),
            "CPU s",
            false,
            2,
        ),
        def(
            &keys.crr,
            "New TCP connections (connect, 1 B each way, close)".to_owned(),
            "conn/s",
            true,
            0,
        ),
    ];
    for row in &mut defs {
        row.chart = !row.label.starts_with("  ");
    }
    defs.extend(bulk_defs());
    let latency = latency_defs();
    defs.splice(4..4, latency);
    for (scale, (p50, p99)) in scales.iter().zip(&keys.connect) {
        let mut row = def(
            p50,
            format!("TCP connect time, {scale} Services, p50"),
            "µs",
            false,
            1,
        );
        row.chart = true;
        defs.push(row);
        defs.push(def(
            p99,
            format!("TCP connect time, {scale} Services, p99"),
            "µs",
            false,
            1,
        ));
    }
    defs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scale_gets_a_p50_and_a_p99_row() {
        let defs = metric_defs(&[100, 10_000], false);
        let latency = latency_defs().len();
        assert_eq!(latency, 2 * 3 * 5 + 3);
        let bulk = bulk_defs().len();
        assert_eq!(bulk, 4 * 2 + 1);
        assert_eq!(defs.len(), 5 + bulk + latency + 4);
        assert_eq!(defs[5 + bulk + latency].key, "connect_p50_us_100");
        assert_eq!(defs[8 + bulk + latency].key, "connect_p99_us_10000");
        assert_eq!(defs[5 + latency].key, "bulk_gbps");
        let keys: std::collections::HashSet<&str> = defs.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys.len(), defs.len());
    }

    #[test]
    fn latency_rows_cover_every_load_and_quantile() {
        let defs = metric_defs(&[100], true);
        assert_eq!(defs.len(), latency_defs().len() + bulk_defs().len());
        assert_eq!(defs[0].key, "rr_idle_p50_us");
        assert_eq!(defs[0].label, "UDP request/response latency, idle, p50");
        assert!(defs.iter().any(|d| d.key == "setup_nice19_p999_us"));
        assert!(defs.iter().any(|d| d.key == "loadavg1_nice0"));
        let charted: Vec<&str> = defs
            .iter()
            .filter(|d| d.chart)
            .map(|d| d.key.as_str())
            .collect();
        assert_eq!(
            charted,
            [
                "rr_idle_p50_us",
                "rr_idle_p99_us",
                "bulk_gbps",
                "bulk_gbps_8"
            ]
        );
        let full = metric_defs(&[100], false);
        let charted = full.iter().filter(|d| d.chart).count();
        // rate, CPU, RR p50 and p99, connections, bulk 1 and 8 streams, connect p50 at one
        // scale
        assert_eq!(charted, 8);
    }
}
