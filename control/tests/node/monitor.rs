//! `ferroplane monitor` on a live node, like `cilium monitor`: NetworkPolicy verdicts name the
//! policy that allowed or denied a new flow, and drops of every kind show up, those decided in
//! the pipeline (policy, no route) and those at transmit (a device that refuses the frame).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::harness::{BIN, Backend, NODE_IP, Node};

/// A running `ferroplane monitor --type KIND`, its lines read on a thread of their own.
struct Monitor {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Monitor {
    fn start(node: &Node, kind: &str) -> Monitor {
        let mut child = Command::new(BIN)
            .args(["monitor", "--type", kind, "--socket"])
            .arg(node.socket())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Monitor {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (from now on) that contains every one of `parts`, within 5 s.
    fn expect(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if parts.iter().all(|p| line.contains(p)) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no event with {parts:?}; saw {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pod b accepts TCP 8080 only from pod a.
const POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: b-from-a\n  namespace: default\nspec:\n  podSelector:\n    matchLabels:\n      app: mv-b\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels:\n          app: mv-a\n    ports:\n    - port: 8080\n      protocol: TCP\n---\n";

#[test]
fn monitor_shows_policy_verdicts_and_drops_in_the_pipeline_and_at_transmit() {
    let mut node = Node::start("mv", Backend::Tap, 3, 1, POLICY);
    node.serve(1, 8080);
    let (a, b, c) = (
        node.pods[0].ip.clone(),
        node.pods[1].ip.clone(),
        node.pods[2].ip.clone(),
    );
    let mut verdicts = Monitor::start(&node, "policy-verdict");
    let mut drops = Monitor::start(&node, "drop");
    // Let both subscribe before traffic flows.
    std::thread::sleep(Duration::from_millis(300));

    assert_eq!(node.tcp(0, &b, 8080, "hi"), format!("hi from {a}"));
    let allowed = verdicts.expect(&["ingress allow", &format!("{a}:"), &format!("-> {b}:8080")]);
    assert!(
        allowed.contains("policy default/b-from-a") && allowed.contains(&format!("policy-pod {b}")),
        "{allowed}"
    );

    assert!(!node.tcp(2, &b, 8080, "no").starts_with("no from"));
    let denied = verdicts.expect(&["ingress deny", &format!("{c}:")]);
    assert!(denied.contains("policy default/b-from-a"), "{denied}");
    let dropped = drops.expect(&["drop (policy_ingress_denied)", &format!("{c}:")]);
    assert!(
        dropped.contains("from default/mv-c") && dropped.contains("policy default/b-from-a"),
        "{dropped}"
    );

    // From the underlay, un-translated traffic to a pod address no pod has: no route.
    node.underlay
        .ip(&["route", "add", "10.244.0.0/16", "via", NODE_IP]);
    node.underlay
        .run(&["ping", "-c", "1", "-W", "1", "10.244.0.99"]);
    drops.expect(&["drop (no_route)", "-> 10.244.0.99:", "from uplink"]);

    // Pod b's interface is down: its TAP refuses the frames ferroplane writes to it.
    node.pods[1].ns.ip(&["link", "set", "eth0", "down"]);
    let _ = node.tcp(0, &b, 8080, "down");
    drops.expect(&[
        "drop (tx_ring_full)",
        &format!("-> {b}:8080"),
        "to default/mv-b",
    ]);
    assert!(
        node.metric("ferroplane_drops_total", &["reason=\"tx_ring_full\""]) > 0,
        "{}",
        node.log()
    );
}
