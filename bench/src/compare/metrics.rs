//! The figures of the comparison: the keys the session records values under, and the
//! table's rows (label, unit, which direction is better, decimals shown).
//!
//! Invariant: every key is unique, and every row's key is one the session records.

use super::udp_rate::LOSS_LIMIT;

/// The keys of the figures, as the session records them.
pub struct MetricKeys {
    pub udp_rate: String,
    pub cpu_per_million: String,
    pub cpu_load_cpu: String,
    pub cpu_dataplane_cpu: String,
    pub rr_p50: String,
    pub rr_p99: String,
    pub crr: String,
    pub bulk: String,
    /// (p50, p99) per Service count.
    pub connect: Vec<(String, String)>,
}

pub fn metric_keys(scales: &[usize]) -> MetricKeys {
    MetricKeys {
        udp_rate: "udp_pps".to_owned(),
        cpu_per_million: "cpu_s_per_mpkt".to_owned(),
        cpu_load_cpu: "cpu_load_cpu_s_per_mpkt".to_owned(),
        cpu_dataplane_cpu: "cpu_dataplane_cpu_s_per_mpkt".to_owned(),
        rr_p50: "rr_p50_us".to_owned(),
        rr_p99: "rr_p99_us".to_owned(),
        crr: "crr_per_s".to_owned(),
        bulk: "bulk_gbps".to_owned(),
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
}

/// The rows, in table order.
pub fn metric_defs(scales: &[usize]) -> Vec<MetricDef> {
    let keys = metric_keys(scales);
    let def = |key: &str, label: String, unit, higher_is_better, decimals| MetricDef {
        key: key.to_owned(),
        label,
        unit,
        higher_is_better,
        decimals,
    };
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
            &keys.rr_p50,
            "UDP request/response latency, p50".to_owned(),
            "µs",
            false,
            1,
        ),
        def(
            &keys.rr_p99,
            "UDP request/response latency, p99".to_owned(),
            "µs",
            false,
            1,
        ),
        def(
            &keys.crr,
            "New TCP connections (connect, 1 B each way, close)".to_owned(),
            "conn/s",
            true,
            0,
        ),
        def(
            &keys.bulk,
            "Bulk TCP (iperf3, one stream)".to_owned(),
            "Gbit/s",
            true,
            2,
        ),
    ];
    for (scale, (p50, p99)) in scales.iter().zip(&keys.connect) {
        defs.push(def(
            p50,
            format!("TCP connect time, {scale} Services, p50"),
            "µs",
            false,
            1,
        ));
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
        let defs = metric_defs(&[100, 10_000]);
        assert_eq!(defs.len(), 8 + 4);
        assert_eq!(defs[8].key, "connect_p50_us_100");
        assert_eq!(defs[11].key, "connect_p99_us_10000");
        let keys: std::collections::HashSet<&str> = defs.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys.len(), defs.len());
    }
}
