//! The sync loop's metrics, as plain counters and histograms owned by the control thread and
//! rendered in the Prometheus text format. Those kube-proxy has carry its names and help texts
//! (`kubeproxy_sync_proxy_rules_duration_seconds`, `..._last_timestamp_seconds`,
//! `..._no_local_endpoints_total`, `kubeproxy_network_programming_duration_seconds`), so its
//! dashboards and alerts work unchanged; ferroplane's own are under `ferroplane_`.
//!
//! Invariants: histogram buckets are cumulative when rendered and end with `+Inf`, whose count
//! is the histogram's `_count`; a metric with nothing to report yet (no successful sync) is
//! left out rather than rendered as 0; programming latency has kube-proxy's buckets (0.25 s
//! up to 5 min) plus finer ones below 0.25 s, where a userspace dataplane's changes land.

use std::fmt::Write;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use dataplane::snapshot::Snapshot;
use dataplane::tables::services::Service;

/// The annotation the EndpointSlice controller sets to when the change that made the slice
/// what it is happened (the start of network programming latency, as kube-proxy reads it).
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// The trigger time of an object with these annotations (RFC 3339), if it has a valid one.
pub fn trigger_time(annotations: Option<&BTreeMap<String, String>>) -> Option<SystemTime> {
    let text = annotations?.get(TRIGGER_TIME_ANNOTATION)?;
    let at: jiff::Timestamp = text.trim().parse().ok()?;
    Some(SystemTime::from(at))
}

/// kube-proxy's sync duration buckets: 1 ms doubling to about 16 s.
const SYNC_BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// Programming latency buckets: 1 ms doubling to 128 ms, then kube-proxy's (0.25 s, 0.5 s,
/// every second to 59 s, every 5 s to 115 s, every 30 s to 5 min).
static LATENCY_BUCKETS: std::sync::LazyLock<Vec<f64>> = std::sync::LazyLock::new(|| {
    let fine = [
        0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.25, 0.5,
    ];
    let seconds = (1..=59).map(f64::from);
    let five = (0..12).map(|i| 60.0 + 5.0 * f64::from(i));
    let thirty = (0..7).map(|i| 120.0 + 30.0 * f64::from(i));
    fine.into_iter()
        .chain(seconds)
        .chain(five)
        .chain(thirty)
        .collect()
});

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
        let mut counts = ObjectCounts::of_tables(snapshot, problems);
        for (_, service) in snapshot.services.iter() {
            counts.add_service(service, 1);
        }
        counts
    }

    /// The counts of `new` from `self`, the counts of `old` (the snapshot `new` replaces): only
    /// the Services `new` does not share with `old` at the same id are visited (a pointer
    /// compare per Service, not a walk of every Service's backends).
    pub fn updated(&self, old: &Snapshot, new: &Snapshot, problems: usize) -> ObjectCounts {
        let mut counts = ObjectCounts::of_tables(new, problems);
        let services = [
            self.service_ports,
            self.endpoints,
            self.no_local_endpoints_internal,
            self.no_local_endpoints_external,
        ];
        [
            counts.service_ports,
            counts.endpoints,
            counts.no_local_endpoints_internal,
            counts.no_local_endpoints_external,
        ] = services;
        if Arc::ptr_eq(&old.services, &new.services) {
            return counts;
        }
        let (mut olds, mut news) = (old.services.shared(), new.services.shared());
        loop {
            match (olds.next(), news.next()) {
                (Some(o), Some(n)) if Arc::ptr_eq(o, n) => {}
                (o, n) if o.is_none() && n.is_none() => break,
                (o, n) => {
                    if let Some(o) = o {
                        counts.add_service(o, -1);
                    }
                    if let Some(n) = n {
                        counts.add_service(n, 1);
                    }
                }
            }
        }
        counts
    }

    /// Everything but the per-Service counts.
    fn of_tables(snapshot: &Snapshot, problems: usize) -> ObjectCounts {
        ObjectCounts {
            local_pods: snapshot.ports.pods().count() as u64,
            policy_pods: snapshot.policy.len() as u64,
            remote_nodes: snapshot.routes.nodes().len() as u64,
            problems: problems as u64,
            ..ObjectCounts::default()
        }
    }

    /// Counts one Service port in (`sign` 1) or out (`sign` -1).
    fn add_service(&mut self, service: &Service, sign: i64) {
        let add = |count: &mut u64, n: u64| {
            *count = if sign > 0 {
                count.saturating_add(n)
            } else {
                count.saturating_sub(n)
            };
        };
        add(&mut self.service_ports, 1);
        add(&mut self.endpoints, service.backends().len() as u64);
        let none_here = !service.backends().is_empty() && service.local_ready_endpoints() == 0;
        add(
            &mut self.no_local_endpoints_internal,
            u64::from(none_here && service.internal_local()),
        );
        add(
            &mut self.no_local_endpoints_external,
            u64::from(none_here && service.external_local()),
        );
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
            programming_latency: Histogram::new(LATENCY_BUCKETS.as_slice()),
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
    /// Observes the network programming latency of one change: from `trigger` (when the change
    /// happened, e.g. an EndpointSlice's `endpoints.kubernetes.io/last-change-trigger-time`,
    /// see [`trigger_time`]) to `programmed` (its publication to the workers). A trigger after
    /// `programmed` (clock skew between the API server and this node) counts as 0.
    pub fn observe_trigger_time(&mut self, trigger: SystemTime, programmed: SystemTime) {
        let latency = programmed.duration_since(trigger).unwrap_or_default();
        self.programming_latency.observe(latency.as_secs_f64());
    }

    /// Appends every metric in the Prometheus text exposition format.
    pub fn render_prometheus(&self, out: &mut String) {
        self.input.render_prometheus(out);
        self.sync_duration.render(
            out,
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
        );
        if let Some(at) = self.last_sync_timestamp {
            scalar(
                out,
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                "gauge",
                "The last time proxy rules were successfully synced",
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
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
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
            "# HELP kubeproxy_sync_proxy_rules_no_local_endpoints_total Number of services with a Local traffic policy and no endpoints"
        );
        let _ = writeln!(
            out,
            "# TYPE kubeproxy_sync_proxy_rules_no_local_endpoints_total gauge"
        );
        for (policy, value) in [
            ("internal", o.no_local_endpoints_internal),
            ("external", o.no_local_endpoints_external),
        ] {
            let _ = writeln!(
                out,
                "kubeproxy_sync_proxy_rules_no_local_endpoints_total{{traffic_policy=\"{policy}\"}} {value}"
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
    fn the_trigger_time_annotation_starts_the_programming_latency() {
        let mut annotations = BTreeMap::new();
        assert_eq!(trigger_time(Some(&annotations)), None);
        annotations.insert(
            TRIGGER_TIME_ANNOTATION.to_owned(),
            "2026-12-07T17:00:00Z".to_owned(),
        );
        let trigger = trigger_time(Some(&annotations));
        let expected = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_662_800);
        assert_eq!(trigger, Some(expected));
        let mut m = SyncMetrics::default();
        m.observe_trigger_time(expected, expected + std::time::Duration::from_millis(30));
        m.observe_trigger_time(expected, expected - std::time::Duration::from_secs(1));
        let mut out = String::new();
        m.render_prometheus(&mut out);
        assert!(
            out.contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"0.032\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"59\"} 2\n")
        );
        assert!(out.contains("kubeproxy_network_programming_duration_seconds_count 2\n"));
        annotations.insert(TRIGGER_TIME_ANNOTATION.to_owned(), "yesterday".to_owned());
        assert_eq!(trigger_time(Some(&annotations)), None);
    }

    #[test]
    fn nothing_is_claimed_before_the_first_sync() {
        let mut out = String::new();
        SyncMetrics::default().render_prometheus(&mut out);
        assert!(!out.contains("last_timestamp_seconds"));
        assert!(out.contains("ferroplane_sync_proxy_rules_sync_failures_total 0\n"));
        assert!(out.contains("kubeproxy_network_programming_duration_seconds_count 0\n"));
        assert!(out.contains("ferroplane_sync_proxy_rules_objects{kind=\"service_ports\"} 0\n"));
    }
}
