//! The node's HTTP listeners under abuse: slow clients (slowloris) against `/healthz`, a
//! health-check node port, the metrics listener and the TCP admin endpoint, while real GETs
//! must keep being answered within 1 s (what a cloud load balancer's probe allows).

use std::path::PathBuf;

use crate::harness::{Backend, NODE_IP, Node, NodeYaml, must};
use crate::scripts::{IDLE_FLOOD, ONE_GET, SLOWLORIS};

/// The token the TCP admin endpoint of these tests wants.
const TOKEN: &str = "abuse-test-token-0123456789";

/// An LB Service with `externalTrafficPolicy: Local`, so the node serves its health-check node
/// port.
const LB: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\n  namespace: default\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector:\n    app: sl-a\n  ports:\n  - port: 80\n    targetPort: 8080\n---\n";

/// Runs the slowloris client in the node namespace against `host:port`; returns its report.
fn slowloris(
    node: &Node,
    host: &str,
    port: u16,
    path: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut cfg =
        serde_json::json!({"host": host, "port": port, "path": path, "trickle": 50, "gets": 19});
    if let (Some(cfg), Some(extra)) = (cfg.as_object_mut(), extra.as_object()) {
        cfg.extend(extra.clone());
    }
    let out = node
        .node
        .run(&["python3", "-c", SLOWLORIS, &cfg.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "slowloris client: {e}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn health_check_port(node: &Node) -> u16 {
    let state = node.dir.path().join("state");
    let svc = must(
        crate::harness::BIN,
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
    u16::try_from(svc["spec"]["healthCheckNodePort"].as_u64().unwrap()).unwrap()
}

#[test]
fn slow_clients_never_delay_real_gets_on_any_listener() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let admin = format!(
        "  listen: 127.0.0.1:10299\n  tokenFile: {}\n",
        token.display()
    );
    let node = Node::start_with_yaml(
        "sl",
        Backend::Tap,
        "af-packet",
        1,
        1,
        LB,
        &NodeYaml {
            admin: &admin,
            ..NodeYaml::default()
        },
    );
    node.node
        .ip(&["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"]);
    let hc = health_check_port(&node);
    let auth = serde_json::json!({"headers": format!("Authorization: Bearer {TOKEN}\r\n")});
    let targets = [
        (
            "/healthz",
            "127.0.0.1",
            10256,
            "/healthz",
            serde_json::json!({}),
        ),
        (
            "health check node port",
            NODE_IP,
            hc,
            "/",
            serde_json::json!({}),
        ),
        ("admin TCP", "127.0.0.1", 10299, "/stats", auth),
    ];
    let mut failed = Vec::new();
    for (what, host, port, path, extra) in targets {
        let report = slowloris(&node, host, port, path, extra);
        eprintln!("{what}: {report}");
        if report["answered"] != report["of"] {
            failed.push(format!("{what}: {report}"));
        }
    }
    assert!(
        failed.is_empty(),
        "real GETs not answered within 1 s under 50 trickling clients:\n{}",
        failed.join("\n")
    );
}

/// A CA and a certificate for 127.0.0.1 it signed, made with openssl in `dir`: (ca, cert, key).
fn make_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = "set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=fp-test-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout admin.key -out admin.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext
openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 2 -extfile ext 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other.key -out other.crt -days 2 -subj /CN=other-ca 2>/dev/null";
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join("ca.crt"),
        dir.join("admin.crt"),
        dir.join("admin.key"),
    )
}

/// A node with the metrics listener (default address) and the TCP admin endpoint over TLS on
/// 127.0.0.1:10298.
fn tls_node(tag: &str, dir: &std::path::Path) -> (Node, PathBuf, PathBuf) {
    let (ca, cert, key) = make_certificates(dir);
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let admin = format!(
        "  listen: 127.0.0.1:10298\n  tokenFile: {}\n  tls:\n    certFile: {}\n    keyFile: {}\n",
        token.display(),
        cert.display(),
        key.display()
    );
    let node = Node::start_with_yaml(
        tag,
        Backend::Tap,
        "af-packet",
        1,
        1,
        "",
        &NodeYaml {
            admin: &admin,
            ..NodeYaml::default()
        },
    );
    (node, ca, token)
}

#[test]
fn slow_clients_never_delay_metrics_or_the_tls_admin_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ca, _) = tls_node("st", dir.path());
    let auth = serde_json::json!({
        "headers": format!("Authorization: Bearer {TOKEN}\r\n"),
        "ca": ca.display().to_string(),
    });
    let targets = [
        ("metrics listener", 10249, "/metrics", serde_json::json!({})),
        ("admin TLS", 10298, "/stats", auth),
    ];
    let mut failed = Vec::new();
    for (what, port, path, extra) in targets {
        let report = slowloris(&node, "127.0.0.1", port, path, extra);
        eprintln!("{what}: {report}");
        if report["answered"] != report["of"] || report["statuses"][0] != 200 {
            failed.push(format!("{what}: {report}"));
        }
    }
    assert!(
        failed.is_empty(),
        "real GETs not answered within 1 s under 50 trickling clients:\n{}",
        failed.join("\n")
    );
}

#[test]
fn the_cli_reads_the_tls_admin_endpoint_trusting_only_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ca, token) = tls_node("tc", dir.path());
    let cli = |ca: &std::path::Path, args: &[&str]| {
        let mut all = vec![crate::harness::BIN];
        all.extend_from_slice(args);
        all.extend_from_slice(&[
            "--admin-url",
            "https://127.0.0.1:10298",
            "--token-file",
            token.to_str().unwrap(),
            "--ca-file",
            ca.to_str().unwrap(),
        ]);
        node.node.run(&all)
    };
    let out = cli(&ca, &["stats", "-o", "json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stats["node"], "node-tc");
    let out = cli(&ca, &["conntrack", "list", "--ct-state", "established"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&ca, &["conntrack", "list", "--ct-state", "dancing"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not one of"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A certificate from a CA the client was not told to trust is refused.
    let out = cli(&dir.path().join("other.crt"), &["stats"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("TLS"), "{err}");
    // Without TLS the endpoint does not answer HTTP.
    let out = node.node.run(&[
        "python3",
        "-c",
        ONE_GET,
        "http://127.0.0.1:10298/stats",
        TOKEN,
    ]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).starts_with("200"),
        "plain HTTP answered"
    );
    // The metrics listener answers kube-proxy's names without a token.
    let out = node
        .node
        .run(&["python3", "-c", ONE_GET, "http://127.0.0.1:10249/metrics"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("200 "), "{text}");
    for name in [
        "kubeproxy_sync_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_network_programming_duration_seconds_bucket",
        "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
        "kubeproxy_proxy_healthz_total",
        "ferroplane_drops_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[test]
fn five_thousand_idle_admin_connections_neither_add_threads_nor_lock_out_a_client() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let admin = format!(
        "  listen: 127.0.0.1:10297\n  tokenFile: {}\n",
        token.display()
    );
    let node = Node::start_with_yaml(
        "id",
        Backend::Tap,
        "af-packet",
        1,
        1,
        "",
        &NodeYaml {
            admin: &admin,
            ..NodeYaml::default()
        },
    );
    let pid = node.process.as_ref().unwrap().id();
    let threads = || -> usize {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = threads();
    let mut flood =
        node.node
            .spawn_with_stdin(&["python3", "-c", IDLE_FLOOD, "127.0.0.1", "10297", "5000"]);
    let mut opened = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flood.stdout.take().unwrap()),
        &mut opened,
    )
    .unwrap();
    let during = threads();
    let out = node.node.run(&[
        "python3",
        "-c",
        ONE_GET,
        "http://127.0.0.1:10297/stats",
        TOKEN,
    ]);
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    drop(flood.stdin.take());
    let _ = flood.wait();
    eprintln!(
        "opened {} idle connections; threads {before} before, {during} during",
        opened.trim()
    );
    assert!(
        opened.trim().parse::<usize>().unwrap_or(0) > 0,
        "the flood opened nothing"
    );
    assert!(during <= before, "threads grew from {before} to {during}");
    assert!(
        answer.starts_with("200 "),
        "a real GET among 5000 idle connections: {answer:?}"
    );
}
