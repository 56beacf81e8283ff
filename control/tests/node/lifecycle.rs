//! The process around the data path: configuration errors, health-check node ports that
//! follow Services and endpoints, pods leaving the node, and SIGHUP.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{BIN, Backend, NODE_IP, Node, must};

#[test]
fn a_bad_config_fails_with_the_field_named_and_help_lists_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.yaml");
    for (text, field) in [
        (
            "nodeName: x\nports:\n  uplink:\n    interface: e\n    backend: dpdk\n",
            "ports.uplink.backend",
        ),
        (
            "nodeName: x\nports:\n  uplink:\n    interface: e\nworkerz: 2\n",
            "workerz",
        ),
        ("nodeName: x\n", "ports.uplink"),
        (
            "nodeName: x\nports:\n  uplink:\n    interface: e\nworkers:\n  scheduling:\n    policy: fifo\n    priority: 100\n",
            "workers.scheduling.priority",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} was accepted");
        assert!(stderr.contains(field), "{text:?}: {stderr}");
    }
    let help = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for key in [
        "ports.uplink.backend",
        "conntrack.maxEntries",
        "flowState",
        "--node-name",
        "--workers",
        "--worker-policy",
        "workers.scheduling.policy",
    ] {
        assert!(help.contains(key), "run --help lacks {key}");
    }
}

#[test]
fn snat_ports_overlapping_the_hosts_ephemeral_range_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.yaml");
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let (lo, hi) = host.split_once(char::is_whitespace).unwrap();
    let (lo, hi) = (lo.trim(), hi.trim());
    std::fs::write(
        &path,
        format!("nodeName: x\nports:\n  uplink:\n    interface: e\nsnatPorts: {lo}-{lo}\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an overlapping snatPorts was accepted"
    );
    assert!(
        stderr.contains(&format!("snatPorts: {lo}-{lo} overlaps"))
            && stderr.contains(&format!("{lo}-{hi}")),
        "both ranges named: {stderr}"
    );
}

/// `GET url` from inside the node namespace: status and body.
fn http_get(node: &Node, url: &str) -> (u16, String) {
    let script = format!(
        "import urllib.request, urllib.error\ntry:\n    r = urllib.request.urlopen('{url}', timeout=2); print(r.status, r.read().decode())\nexcept urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n"
    );
    let out = node.node.run(&["python3", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (status, body) = text.split_once(' ').unwrap_or(("0", ""));
    (status.parse().unwrap_or(0), body.to_owned())
}

fn eventually(what: &str, node: &Node, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(8);
    while !done() {
        assert!(Instant::now() < deadline, "{what}\n{}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_check_node_port_follows_local_endpoints_and_a_leaving_pod_is_detached() {
    let lb = "apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\n  namespace: default\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector:\n    app: hc-b\n  ports:\n  - port: 80\n    targetPort: 8080\n---\n";
    let node = Node::start("hc", Backend::Tap, 2, 1, lb);
    // The node IP lives on the node's own stack; the listener binds it once it exists.
    node.node
        .ip(&["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"]);
    let state = node.dir.path().join("state");
    let svc = must(
        BIN,
        &[
            "--state",
            state.to_str().unwrap(),
            "get",
            "svc",
            "lb",
            "-o",
            "json",
        ],
    );
    let svc: serde_json::Value = serde_json::from_str(&svc).unwrap();
    let port = svc["spec"]["healthCheckNodePort"].as_u64().unwrap();
    let url = format!("http://{NODE_IP}:{port}/any/path");
    let mut answer = (0, String::new());
    eventually("no health check answer", &node, || {
        answer = http_get(&node, &url);
        answer.0 != 0
    });
    assert_eq!(answer.0, 200, "{answer:?}");
    let body: serde_json::Value = serde_json::from_str(&answer.1).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"service": {"namespace": "default", "name": "lb"}, "localEndpoints": 1})
    );
    must(
        BIN,
        &["--state", state.to_str().unwrap(), "delete", "pod", "hc-b"],
    );
    eventually("the health check kept answering 200", &node, || {
        http_get(&node, &url).0 == 503
    });
    let (_, body) = http_get(&node, &url);
    assert!(body.contains("\"localEndpoints\":0"), "{body}");
    // The pod left the node: its port is detached and its TAP deleted.
    eventually("hc-b's TAP was not deleted", &node, || {
        !node.pods[1].ns.has_link("eth0")
    });
    eventually("hc-b's port is still listed", &node, || {
        !node.admin("/stats").unwrap().1.contains("default/hc-b")
    });
    assert!(node.admin("/stats").unwrap().1.contains("default/hc-a"));
}

#[test]
fn sighup_applies_snapshot_fields_and_defers_the_others() {
    let node = Node::start("hu", Backend::AfPacket, 2, 1, "");
    let b = node.pods[1].ip.clone();
    let config = std::fs::read_to_string(node.config_path()).unwrap();
    let edited =
        config.replace("  count: 1\n", "  count: 2\n") + "masqueradeExempt: [172.16.0.0/12]\n";
    std::fs::write(node.config_path(), edited).unwrap();
    let pid = node.process.as_ref().unwrap().id().to_string();
    must("kill", &["-HUP", &pid]);
    eventually("the reload was not logged", &node, || {
        let log = node.log();
        log.contains("SIGHUP: applied masqueradeExempt")
            && log.contains("effective at the next start: workers")
    });
    assert!(
        node.ping(0, &b),
        "forwarding after the reload\n{}",
        node.log()
    );
    let generation = node.metric("ferroplane_snapshot_generation", &[]);
    assert!(generation >= 1);
}
