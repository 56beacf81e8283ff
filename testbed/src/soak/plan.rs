//! What the soak runs: the extra objects it applies on top of the demo (a second client, the
//! long-lived connections' own backends, a UDP Service, an intruder pod and the policy it
//! flips), and the cycle of changes it makes, one every step.
//!
//! Invariants: no change cuts the load's own allowed traffic except the disruptive ones
//! ([`Change::disruptive`]: a node restart, a crashed backend), whose failures the verdict
//! allows inside their window; the long-lived connections' backends (`soak-held-*`) and the
//! client pods are never changed, only their nodes restarted; the policy allows every client
//! (role `fe`) and denies only the intruder.

/// The pods that run the load (role `fe`, allowed by the policy), one per node.
pub const CLIENTS: [&str; 2] = ["store-fe", "soak-client-2"];
/// The pod whose connections the policy denies while it is in force.
pub const INTRUDER: &str = "soak-intruder";
/// The Service of the long-lived connections (backends `soak-held-1`, `soak-held-2`).
pub const HELD_SERVICE: &str = "soak-held";
/// The TCP Service under endpoint churn (the demo's).
pub const TCP_SERVICE: &str = "store-be";
/// The same backends over UDP.
pub const UDP_SERVICE: &str = "store-be-udp";
/// The name the DNS load looks up through kube-dns, answered with `TCP_SERVICE`'s ClusterIP.
pub const DNS_NAME: &str = "store-be.default.svc.cluster.local.";
/// kube-dns's ClusterIP (the demo's).
pub const DNS_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 0, 10);
/// The NetworkPolicy the soak applies and deletes in turn.
pub const POLICY: &str = "soak-be-from-fe";
/// The backend whose readiness flips and which is crashed and re-created.
pub const CHURNED: &str = "store-be-3";
const CHURNED_NODE: &str = "node-2";

/// The soak's own objects, applied after the demo.
pub const OBJECTS: &str = r"# testbed soak: a client on node-2, the long-lived connections' backends, UDP to store-be,
# a pod the policy denies.
apiVersion: v1
kind: Pod
metadata:
  name: soak-client-2
  labels: {app: store, role: fe}
spec:
  nodeName: node-2
  containers:
  - name: client
    ports: [{name: http, containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: soak-intruder
  labels: {app: soak, role: intruder}
spec:
  nodeName: node-2
  containers:
  - name: client
    ports: [{name: http, containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: soak-held-1
  labels: {app: soak, role: held}
spec:
  nodeName: node-1
  containers:
  - name: app
    ports: [{name: http, containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: soak-held-2
  labels: {app: soak, role: held}
spec:
  nodeName: node-2
  containers:
  - name: app
    ports: [{name: http, containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: soak-held
spec:
  selector: {app: soak, role: held}
  ports:
  - {name: http, port: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: store-be-udp
spec:
  selector: {app: store, role: be}
  ports:
  - {name: udp, port: 80, protocol: UDP}
";

/// The policy of [`Change::PolicyOn`]: store-be pods take TCP and UDP 80 from `fe` pods only.
pub const POLICY_OBJECT: &str = r"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: soak-be-from-fe
spec:
  podSelector:
    matchLabels: {role: be}
  ingress:
  - from:
    - podSelector:
        matchLabels: {role: fe}
    ports:
    - {protocol: TCP, port: 80}
    - {protocol: UDP, port: 80}
";

/// A store-be pod on `node`: the churned backend re-created, or one added by a scale-up.
pub fn backend_pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: store, role: be}}\n\
         spec:\n  nodeName: {node}\n  containers:\n  - name: app\n    ports: [{{name: http, containerPort: 80}}]\n"
    )
}

/// One change to the running cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The churned backend's Ready condition (its endpoint follows).
    Ready(bool),
    /// A new store-be pod, on alternating nodes.
    ScaleUp,
    /// The newest added pod: unready, drained, then removed.
    ScaleDown,
    PolicyOn,
    PolicyOff,
    /// The churned backend crashes (SIGKILL, namespace and Pod gone) ...
    CrashBackend,
    /// ... and is created again.
    RecreateBackend,
    /// `restart-node` (SIGTERM) or `restart-node --crash` (SIGKILL).
    Restart {
        node: &'static str,
        crash: bool,
    },
}

impl Change {
    /// Whether requests may fail while it happens (the verdict allows failures only inside
    /// the window of such a change).
    pub fn disruptive(self) -> bool {
        matches!(self, Change::CrashBackend | Change::Restart { .. })
    }

    pub fn name(self) -> String {
        match self {
            Change::Ready(ready) => format!("set-ready {CHURNED} {ready}"),
            Change::ScaleUp => "scale up".to_owned(),
            Change::ScaleDown => "scale down".to_owned(),
            Change::PolicyOn => format!("policy {POLICY} on"),
            Change::PolicyOff => format!("policy {POLICY} off"),
            Change::CrashBackend => format!("kill-pod {CHURNED}"),
            Change::RecreateBackend => format!("re-create {CHURNED}"),
            Change::Restart { node, crash } => {
                format!("restart-node {node}{}", if crash { " --crash" } else { "" })
            }
        }
    }
}

/// One cycle of changes; the soak runs it from the start again when it ends. Each node's
/// ferroplane is restarted and SIGKILLed once per cycle, spread between the other changes.
pub const CYCLE: [Change; 12] = [
    Change::Ready(false),
    Change::Restart {
        node: "node-1",
        crash: false,
    },
    Change::PolicyOn,
    Change::Ready(true),
    Change::Restart {
        node: "node-2",
        crash: true,
    },
    Change::ScaleUp,
    Change::CrashBackend,
    Change::Restart {
        node: "node-2",
        crash: false,
    },
    Change::RecreateBackend,
    Change::PolicyOff,
    Change::Restart {
        node: "node-1",
        crash: true,
    },
    Change::ScaleDown,
];

/// The node of the churned backend.
pub fn churned_node() -> &'static str {
    CHURNED_NODE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_restarts_and_kills_every_node_once() {
        for node in ["node-1", "node-2"] {
            for crash in [false, true] {
                let count = CYCLE
                    .iter()
                    .filter(|c| **c == Change::Restart { node, crash })
                    .count();
                assert_eq!(count, 1, "{node} crash={crash}");
            }
        }
        // Every change that is undone is undone later in the same cycle.
        let at = |change| CYCLE.iter().position(|c| *c == change).unwrap();
        assert!(at(Change::Ready(false)) < at(Change::Ready(true)));
        assert!(at(Change::PolicyOn) < at(Change::PolicyOff));
        assert!(at(Change::ScaleUp) < at(Change::ScaleDown));
        assert!(at(Change::CrashBackend) < at(Change::RecreateBackend));
        // The churned backend is ready again before it crashes (its crash is the window).
        assert!(at(Change::Ready(true)) < at(Change::CrashBackend));
    }

    #[test]
    fn only_restarts_and_crashes_are_disruptive() {
        let disruptive: Vec<String> = CYCLE
            .iter()
            .filter(|c| c.disruptive())
            .map(|c| c.name())
            .collect();
        assert_eq!(disruptive.len(), 5, "{disruptive:?}");
        assert!(!Change::PolicyOn.disruptive() && !Change::ScaleDown.disruptive());
    }
}
