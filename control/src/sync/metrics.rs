//! The sync loop's metrics, named and shaped as kube-proxy's (`sync_proxy_rules_*`,
//! `network_programming_duration_seconds`) under the `ferroplane_` prefix, as plain counters
//! and histograms owned by the control thread and rendered in the Prometheus text format.
//!
//! Invariants: histogram buckets are cumulative when rendered and end with `+Inf`, whose count
//! is the histogram's `_count`; a metric with nothing to report yet (no successful sync) is
//! left out rather than rendered as 0.

use std::fmt::Write;

use dataplane::snapshot::Snapshot;

/// kube-proxy's sync duration buckets: 1 ms doubling to about 16 s.
const SYNC_BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// Programming latency buckets: 1 ms doubling to about 8.7 min.
const LATENCY_BUCKETS: [f64; 20] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384, 32.768, 65.536, 131.072, 262.144, 524.288,
];

/// A Prometheus histogram with fixed upper bounds (seconds).
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, seconds: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get_mut(slot) {
            *count += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// What the last published snapshot holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectCounts {
    /// Service ports (one per protocol and port of each proxied Service).
    pub service_ports: u64,
    /// Endpoints over all Service ports.
    pub endpoints: u64,
    /// Pods on this node with a port.
    pub local_pods: u64,
    /// Pods with policy rules on this node.
    pub policy_pods: u64,
    /// Other nodes routed to.
    pub remote_nodes: u64,
    /// Objects skipped or programmed in part.
    pub problems: u64,
    /// Service ports with internalTrafficPolicy Local, endpoints, and none of them here.
    pub no_local_endpoints_internal: u64,
    /// The same for externalTrafficPolicy Local.
    pub no_local_endpoints_external: u64,
}

impl ObjectCounts {
    pub fn of(snapshot: &Snapshot, problems: usize) -> ObjectCounts {
        let mut counts = ObjectCounts {
            local_pods: snapshot.ports.pods().count() as u64,
            policy_pods: snapshot.policy.len() as u64,
            remote_nodes: snapshot.routes.nodes().len() as u64,
            problems: problems as u64,
            ..ObjectCounts::default()
        };
        for (_, service) in snapshot.services.iter() {
            counts.service_ports += 1;
            counts.endpoints += service.backends().len() as u64;
            let none_here = !service.backends().is_empty() && service.local_ready_endpoints() == 0;
            if none_here && service.internal_local() {
                counts.no_local_endpoints_internal += 1;
            }
            if none_here && service.external_local() {
                counts.no_local_endpoints_external += 1;
            }
        }
        counts
    }
}

/// All metrics of one sync loop.
#[derive(Clone, Debug)]
pub struct SyncMetrics {
    /// Load, compile and publish, per successful sync.
    pub sync_duration: Histogram,
    /// Wall-clock time (Unix seconds) of the last successful sync.
    pub last_sync_timestamp: Option<f64>,
    pub syncs: u64,
    pub sync_failures: u64,
    /// Committed state generations not yet programmed.
    pub pending_changes: u64,
    /// From the commit of a change (the state's generation file time) to its publication.
    pub programming_latency: Histogram,
    pub objects: ObjectCounts,
    /// Bad input skipped or recovered from (`sync::input_health`).
    pub input: super::input_health::InputHealth,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        SyncMetrics {
            sync_duration: Histogram::new(&SYNC_BUCKETS),
            last_sync_timestamp: None,
            syncs: 0,
            sync_failures: 0,
            pending_changes: 0,
            programming_latency: Histogram::new(&LATENCY_BUCKETS),
            objects: ObjectCounts::default(),
            input: super::input_health::InputHealth::default(),
        }
    }
}

fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

impl SyncMetrics {
    /// Appends every metric in the Prometheus text exposition format.
    pub fn render_prometheus(&self, out: &mut String) {
        self.input.render_prometheus(out);
        self.sync_duration.render(
            out,
            "ferroplane_sync_proxy_rules_duration_seconds",
            "Time to load the cluster state, compile and publish the node's snapshot.",
        );
        if let Some(at) = self.last_sync_timestamp {
            scalar(
                out,
                "ferroplane_sync_proxy_rules_last_timestamp_seconds",
                "gauge",
                "Unix time of the last successful sync.",
                at,
            );
        }
        scalar(
            out,
            "ferroplane_sync_proxy_rules_syncs_total",
            "counter",
            "Successful syncs.",
            self.syncs,
        );
        scalar(
            out,
            "ferroplane_sync_proxy_rules_sync_failures_total",
            "counter",
            "Syncs that kept the previous snapshot because the state could not be loaded or compiled.",
            self.sync_failures,
        );
        scalar(
            out,
            "ferroplane_sync_proxy_rules_pending_changes",
            "gauge",
            "Committed state changes not yet programmed.",
            self.pending_changes,
        );
        self.programming_latency.render(
            out,
            "ferroplane_network_programming_duration_seconds",
            "Time from a committed object change to its publication to the workers.",
        );
        let _ = writeln!(
            out,
            "# HELP ferroplane_sync_proxy_rules_objects Objects in the published snapshot."
        );
        let _ = writeln!(out, "# TYPE ferroplane_sync_proxy_rules_objects gauge");
        let o = &self.objects;
        for (kind, value) in [
            ("service_ports", o.service_ports),
            ("endpoints", o.endpoints),
            ("local_pods", o.local_pods),
            ("policy_pods", o.policy_pods),
            ("remote_nodes", o.remote_nodes),
            ("problems", o.problems),
        ] {
            let _ = writeln!(
                out,
                "ferroplane_sync_proxy_rules_objects{{kind=\"{kind}\"}} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ferroplane_sync_proxy_rules_no_local_endpoints Service ports with a Local traffic policy and no local endpoint."
        );
        let _ = writeln!(
            out,
            "# TYPE ferroplane_sync_proxy_rules_no_local_endpoints gauge"
        );
        for (policy, value) in [
            ("internal", o.no_local_endpoints_internal),
            ("external", o.no_local_endpoints_external),
        ] {
            let _ = writeln!(
                out,
                "ferroplane_sync_proxy_rules_no_local_endpoints{{traffic_policy=\"{policy}\"}} {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_inf() {
        let mut h = Histogram::new(&SYNC_BUCKETS);
        for seconds in [0.0005, 0.003, 0.003, 100.0] {
            h.observe(seconds);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("# TYPE x histogram\n"));
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.002\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"0.004\"} 3\n"));
        assert!(out.contains("x_bucket{le=\"16.384\"} 3\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"));
        assert!(out.contains("x_count 4\n"));
        assert!(out.contains("x_sum 100.0065\n"), "{out}");
    }

    #[test]
    fn nothing_is_claimed_before_the_first_sync() {
        let mut out = String::new();
        SyncMetrics::default().render_prometheus(&mut out);
        assert!(!out.contains("last_timestamp_seconds"));
        assert!(out.contains("ferroplane_sync_proxy_rules_sync_failures_total 0\n"));
        assert!(out.contains("ferroplane_network_programming_duration_seconds_count 0\n"));
        assert!(out.contains("ferroplane_sync_proxy_rules_objects{kind=\"service_ports\"} 0\n"));
    }
}
