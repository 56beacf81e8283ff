//! Dual-stack scenarios (`testbed up --ip-family dual`): every pod has an IPv4 and an IPv6
//! address from its node's two podCIDRs (wired by `ferroplane-cni`), Services ask for both
//! families, and the checks below run in IPv6 beside IPv4 with the same clients (the testbed
//! prober, `dig`).
//!
//! - `dual_stack_pods_services_and_dns_over_vxlan` (three nodes, one testbed): pod to pod in
//!   IPv6 on one node and across nodes (the underlay carries the IPv6 packets inside IPv4
//!   VXLAN), the store-be Service's two ClusterIPs (IPv6 spread over all three backends, a
//!   connection kept on one, the client's IPv6 address seen), DNS (A and AAAA of the
//!   dual-stack Service, PTR in `ip6.arpa`, a headless Service answering both families).
//! - `dual_stack_pods_and_service_over_the_routed_underlay`: pod to pod and the Service in
//!   IPv6 in routed mode (plain IPv6 packets on the underlay, the router's per-node routes).
//! - `dual_stack_internet_policy_node_port_and_change_in_ipv6` (the demo): a pod reaches the
//!   internet host's IPv6 address as its node (IPv6 masquerade), the seed's policies hold in
//!   IPv6 as in IPv4, a NodePort and a LoadBalancer Service answer on the nodes' IPv6 addresses
//!   (externalTrafficPolicy Cluster and Local), and under steady load to the IPv6 ClusterIP a
//!   backend turning unready and back fails no request.
//!
//! Each test collects every broken promise and fails with the whole list, so one run says
//! which IPv6 behaviours are missing.

use std::net::Ipv6Addr;
use std::time::Duration;

use serde_json::Value;

use crate::capture;
use crate::cluster::{Cluster, DEMO, MANIFESTS};

const NODE_1_V6: &str = "fd00:192:168:50::2";
const NODE_2_V6: &str = "fd00:192:168:50::3";
const INTERNET_V6: &str = "2001:db8:203::10";
const FQDN: &str = "store-be.default.svc.cluster.local";

/// Broken promises, reported together at the end.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            let what = what.into();
            eprintln!("FAILED: {what}");
            self.0.push(what);
        }
    }

    fn finish(self, scenario: &str) {
        assert!(
            self.0.is_empty(),
            "{scenario}: {} broken promise(s):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// The pod's IPv6 address, from `testbed status`.
fn pod_ip6(cluster: &Cluster, pod: &str) -> String {
    let status = cluster.status();
    let pods = status["pods"].as_array().unwrap();
    let found = pods.iter().find(|p| p["name"] == pod).unwrap();
    found["ip6"]
        .as_str()
        .unwrap_or_else(|| panic!("pod {pod} has no IPv6 address: {found}"))
        .to_owned()
}

/// A Service's `spec.clusterIPs`.
fn cluster_ips(cluster: &Cluster, service: &str) -> Vec<String> {
    let svc = cluster.get("svc", service);
    svc["spec"]["clusterIPs"]
        .as_array()
        .unwrap_or_else(|| panic!("{service} has no clusterIPs: {svc}"))
        .iter()
        .map(|ip| ip.as_str().unwrap().to_owned())
        .collect()
}

fn target(ip: &str, port: u16) -> String {
    format!("{}:{port}", bracketed(ip))
}

fn bracketed(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// One probe; `(result, answered_by, client_addr)`.
fn probe(cluster: &Cluster, from: &str, to: &str, protocol: &str) -> (String, String, String) {
    let report = cluster.probe(from, to, protocol, 1);
    let field = |name: &str| report[name].as_str().unwrap_or_default().to_owned();
    (field("result"), field("answered_by"), field("client_addr"))
}

/// Pod `from` reaches pod `to` at its IPv6 address; `to` sees `from`'s IPv6 address.
fn pod_to_pod6(findings: &mut Findings, cluster: &Cluster, from: &str, to: &str) {
    let (from_ip, to_ip) = (pod_ip6(cluster, from), pod_ip6(cluster, to));
    for protocol in ["tcp", "udp"] {
        let (result, by, client) = probe(cluster, from, &target(&to_ip, 80), protocol);
        findings.check(
            result == "connected" && by == to,
            format!("{from} -> {to} [{to_ip}]:80 {protocol}: {result}, answered by {by:?}"),
        );
        findings.check(
            result != "connected" || client.starts_with(&format!("[{from_ip}]:")),
            format!("{to} saw {client}, not {from}'s IPv6 address {from_ip}"),
        );
    }
}

/// `dig +short ARGS` from pod `from`, one answer per line, sorted.
fn dig(cluster: &Cluster, from: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["exec", from, "--", "dig", "+short", "+time=2", "+tries=2"];
    all.extend_from_slice(args);
    let out = cluster.testbed(&all);
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// The IPv6 packets a VXLAN frame carries (outer IPv4 UDP 8472, inner IPv6): the inner
/// source and destination; parsed from fixed offsets, independently of the dataplane's code.
fn vxlan_inner_ipv6(frame: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr)> {
    if frame.get(12..14)? != [0x08, 0x00] || *frame.get(23)? != 17 {
        return None;
    }
    let udp = 14 + usize::from(frame[14] & 0x0f) * 4;
    if u16::from_be_bytes([*frame.get(udp + 2)?, *frame.get(udp + 3)?]) != 8472 {
        return None;
    }
    ipv6_addresses(frame.get(udp + 16..)?)
}

/// The source and destination of an Ethernet/IPv6 frame.
fn ipv6_addresses(frame: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr)> {
    if frame.get(12..14)? != [0x86, 0xdd] {
        return None;
    }
    let src: [u8; 16] = frame.get(22..38)?.try_into().ok()?;
    let dst: [u8; 16] = frame.get(38..54)?.try_into().ok()?;
    Some((Ipv6Addr::from(src), Ipv6Addr::from(dst)))
}

/// The store-be Service in both families: two ClusterIPs (IPv4 first), each answering; the
/// IPv6 one spreads new connections over `backends` and keeps one connection on one backend.
fn service_in_both_families(findings: &mut Findings, cluster: &Cluster, backends: &[&str]) {
    let ips = cluster_ips(cluster, "store-be");
    findings.check(
        ips.len() == 2 && !ips[0].contains(':') && ips[1].contains(':'),
        format!("store-be clusterIPs {ips:?}: want an IPv4 and an IPv6 address"),
    );
    let Some(v6) = ips.iter().find(|ip| ip.contains(':')) else {
        return;
    };
    let fe6 = pod_ip6(cluster, "store-fe");
    let mut answered: Vec<String> = Vec::new();
    for _ in 0..24 {
        let (result, by, client) = probe(cluster, "store-fe", &target(v6, 80), "tcp");
        findings.check(
            result == "connected",
            format!("store-fe -> [{v6}]:80: {result}"),
        );
        findings.check(
            result != "connected" || client.starts_with(&format!("[{fe6}]:")),
            format!("a store-be backend saw {client} through [{v6}]:80, not {fe6}"),
        );
        if !answered.contains(&by) && !by.is_empty() {
            answered.push(by);
        }
    }
    answered.sort();
    findings.check(
        answered == backends,
        format!("[{v6}]:80 spread over {answered:?}, want {backends:?}"),
    );
    let held = cluster.probe("store-fe", &target(v6, 80), "tcp", 10);
    let answers: Vec<&str> = held["answers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    findings.check(
        answers.len() == 10 && answers.iter().all(|a| *a == answers[0]),
        format!("one connection to [{v6}]:80 moved between backends: {answers:?}"),
    );
    // The IPv4 ClusterIP answers as before.
    let (v4_result, by, _) = probe(cluster, "store-fe", &target(&ips[0], 80), "tcp");
    findings.check(
        v4_result == "connected" && backends.contains(&by.as_str()),
        format!(
            "store-fe -> {}:80 (the IPv4 ClusterIP): {v4_result} {by:?}",
            ips[0]
        ),
    );
}

#[test]
fn dual_stack_pods_services_and_dns_over_vxlan() {
    let cluster = Cluster::up_with_plugin(
        "ds",
        &[
            "--ip-family",
            "dual",
            "--nodes",
            "3",
            "-f",
            &format!("{MANIFESTS}/three-node-store.yaml"),
            "-f",
            &format!("{DEMO}/20-store-be-service.yaml"),
            "-f",
            &format!("{DEMO}/05-kube-dns.yaml"),
            "-f",
            &format!("{MANIFESTS}/dual-stack-headless.yaml"),
        ],
    );
    let mut findings = Findings::default();
    // The Pod objects carry both addresses, as kubelet reports the CNI result.
    let fe = cluster.get("pod", "store-fe");
    let pod_ips: Vec<&str> = fe["status"]["podIPs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["ip"].as_str())
        .collect();
    assert!(
        pod_ips.len() == 2 && pod_ips[1] == pod_ip6(&cluster, "store-fe"),
        "store-fe status.podIPs {pod_ips:?}"
    );
    let shown = cluster.testbed(&["exec", "store-fe", "--", "ip", "-6", "route", "show"]);
    let routes = String::from_utf8_lossy(&shown.stdout);
    assert!(
        routes.contains("default via fe80::1 dev eth0"),
        "store-fe's IPv6 routes: {routes}"
    );

    // Pod to pod: one node (store-fe and store-be-1 on node-1), and across nodes over VXLAN.
    pod_to_pod6(&mut findings, &cluster, "store-fe", "store-be-1");
    pod_to_pod6(&mut findings, &cluster, "store-be-1", "store-fe");
    let capture = capture::start(&cluster.namespace("underlay"), Duration::from_secs(4));
    pod_to_pod6(&mut findings, &cluster, "store-fe", "store-be-2");
    pod_to_pod6(&mut findings, &cluster, "store-be-3", "store-fe");
    let frames = capture.join().unwrap();
    let fe6: Ipv6Addr = pod_ip6(&cluster, "store-fe").parse().unwrap();
    let be2: Ipv6Addr = pod_ip6(&cluster, "store-be-2").parse().unwrap();
    let inner: Vec<_> = frames.iter().filter_map(|f| vxlan_inner_ipv6(f)).collect();
    findings.check(
        inner.contains(&(fe6, be2)) && inner.contains(&(be2, fe6)),
        format!(
            "no VXLAN (IPv4 underlay) carrying IPv6 {fe6} <-> {be2} among {} frames: {inner:?}",
            frames.len()
        ),
    );
    let closed = target(&be2.to_string(), 81);
    let (result, _, _) = probe(&cluster, "store-fe", &closed, "tcp");
    findings.check(
        result == "refused",
        format!("{closed}, a port nobody listens on: {result}, want refused"),
    );

    service_in_both_families(
        &mut findings,
        &cluster,
        &["store-be-1", "store-be-2", "store-be-3"],
    );

    // DNS: the dual-stack Service's A and AAAA, its PTR in ip6.arpa, the headless Service in
    // both families (every ready backend's address of each).
    let ips = cluster_ips(&cluster, "store-be");
    let want_a = vec![ips[0].clone()];
    let a = dig(&cluster, "store-fe", &[FQDN, "A"]);
    findings.check(a == want_a, format!("A {FQDN}: {a:?}, want {want_a:?}"));
    if let Some(v6) = ips.get(1) {
        let aaaa = dig(&cluster, "store-fe", &[FQDN, "AAAA"]);
        findings.check(
            aaaa == vec![v6.clone()],
            format!("AAAA {FQDN}: {aaaa:?}, want [{v6}]"),
        );
        let ptr = dig(&cluster, "store-fe", &["-x", v6]);
        findings.check(
            ptr == vec![format!("{FQDN}.")],
            format!("PTR of {v6}: {ptr:?}"),
        );
    }
    let headless = "store-be-headless.default.svc.cluster.local";
    let backends = ["store-be-1", "store-be-2", "store-be-3"];
    let mut want4: Vec<String> = backends.iter().map(|p| cluster.pod_ip(p)).collect();
    let mut want6: Vec<String> = backends.iter().map(|p| pod_ip6(&cluster, p)).collect();
    want4.sort();
    want6.sort();
    let got4 = dig(&cluster, "store-fe", &[headless, "A"]);
    let got6 = dig(&cluster, "store-fe", &[headless, "AAAA"]);
    findings.check(
        got4 == want4,
        format!("A {headless}: {got4:?}, want {want4:?}"),
    );
    findings.check(
        got6 == want6,
        format!("AAAA {headless}: {got6:?}, want {want6:?}"),
    );
    // A name from glibc in the pod, through the search path: both addresses.
    let out = cluster.testbed(&["exec", "store-fe", "--", "getent", "ahosts", "store-be"]);
    let ahosts = String::from_utf8_lossy(&out.stdout);
    for ip in &ips {
        findings.check(
            ahosts.lines().any(|l| l.starts_with(&format!("{ip} "))),
            format!("getent ahosts store-be lacks {ip}: {ahosts}"),
        );
    }
    findings.finish("dual-stack over VXLAN");
}

#[test]
fn dual_stack_pods_and_service_over_the_routed_underlay() {
    let cluster = Cluster::up_with_plugin(
        "dr",
        &[
            "--ip-family",
            "dual",
            "--mode",
            "routed",
            "-f",
            &format!("{DEMO}/10-store-app.yaml"),
            "-f",
            &format!("{DEMO}/20-store-be-service.yaml"),
        ],
    );
    let mut findings = Findings::default();
    let capture = capture::start(&cluster.namespace("underlay"), Duration::from_secs(3));
    pod_to_pod6(&mut findings, &cluster, "store-fe", "store-be-2");
    let frames = capture.join().unwrap();
    let fe6: Ipv6Addr = pod_ip6(&cluster, "store-fe").parse().unwrap();
    let be2: Ipv6Addr = pod_ip6(&cluster, "store-be-2").parse().unwrap();
    let plain: Vec<_> = frames.iter().filter_map(|f| ipv6_addresses(f)).collect();
    findings.check(
        plain.contains(&(fe6, be2)) && plain.contains(&(be2, fe6)),
        format!("no plain IPv6 {fe6} <-> {be2} on the routed underlay: {plain:?}"),
    );
    findings.check(
        frames.iter().all(|f| vxlan_inner_ipv6(f).is_none()),
        "VXLAN on a routed underlay",
    );
    pod_to_pod6(&mut findings, &cluster, "store-fe", "store-be-1");
    service_in_both_families(
        &mut findings,
        &cluster,
        &["store-be-1", "store-be-2", "store-be-3"],
    );
    findings.finish("dual-stack routed");
}

#[test]
fn dual_stack_internet_policy_node_port_and_change_in_ipv6() {
    let cluster = Cluster::up_with_plugin(
        "dx",
        &[
            "--ip-family",
            "dual",
            "-f",
            &format!("{DEMO}/10-store-app.yaml"),
            "-f",
            &format!("{DEMO}/20-store-be-service.yaml"),
            "-f",
            &format!("{MANIFESTS}/dual-stack-load-balancer.yaml"),
        ],
    );
    let mut findings = Findings::default();

    // Internet: the host sees the pod's node (IPv6 masquerade), and the answers come back.
    for (pod, node) in [("store-fe", NODE_1_V6), ("store-be-2", NODE_2_V6)] {
        for protocol in ["tcp", "udp"] {
            let (result, by, client) = probe(&cluster, pod, &target(INTERNET_V6, 80), protocol);
            findings.check(
                result == "connected" && by == "internet",
                format!("{pod} -> [{INTERNET_V6}]:80 {protocol}: {result} {by:?}"),
            );
            findings.check(
                result != "connected" || client.starts_with(&format!("[{node}]:")),
                format!("the internet host saw {client} from {pod}, not its node {node}"),
            );
        }
    }

    // NodePort and LoadBalancer in IPv6 from the internet host: Cluster reaches every backend
    // from either node; Local only the node's own backends, with the client address kept.
    let lb = cluster.get("svc", "store-be-lb6");
    let node_port = lb["spec"]["ports"][0]["nodePort"].as_u64().unwrap_or(0);
    let ingress: Vec<String> = lb["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect();
    findings.check(
        ingress.iter().any(|ip| ip.contains(':')),
        format!("store-be-lb6 got no IPv6 ingress IP: {ingress:?}"),
    );
    for node in [NODE_1_V6, NODE_2_V6] {
        let to = target(node, u16::try_from(node_port).unwrap_or(0));
        let (result, by, _) = probe(&cluster, "internet", &to, "tcp");
        findings.check(
            result == "connected" && by.starts_with("store-be-"),
            format!("internet -> NodePort {to}: {result} {by:?}"),
        );
    }
    let local = cluster.get("svc", "store-be-lb6-local");
    let local_port = local["spec"]["ports"][0]["nodePort"].as_u64().unwrap_or(0);
    // node-1 runs store-be-1; store-be-2 and -3 are on node-2.
    for (node, backends) in [
        (NODE_1_V6, &["store-be-1"][..]),
        (NODE_2_V6, &["store-be-2", "store-be-3"][..]),
    ] {
        let to = target(node, u16::try_from(local_port).unwrap_or(0));
        let (result, by, client) = probe(&cluster, "internet", &to, "tcp");
        findings.check(
            result == "connected" && backends.contains(&by.as_str()),
            format!("internet -> Local NodePort {to}: {result} {by:?}, want one of {backends:?}"),
        );
        findings.check(
            result != "connected" || client.starts_with(&format!("[{INTERNET_V6}]:")),
            format!("Local NodePort {to}: the backend saw {client}, not the internet host"),
        );
    }

    // Through the cloud LB to the IPv6 ingress IPs: Cluster spreads over the backends, Local
    // keeps the internet host's address.
    let ingress6 = |svc: &Value| -> Option<String> {
        svc["status"]["loadBalancer"]["ingress"]
            .as_array()?
            .iter()
            .filter_map(|i| i["ip"].as_str())
            .find(|ip| ip.contains(':'))
            .map(str::to_owned)
    };
    // The cloud LB programs its routes once the health checks answered (a few rounds).
    std::thread::sleep(Duration::from_secs(2));
    for (svc, keeps_client) in [(&lb, false), (&local, true)] {
        let Some(ip) = ingress6(svc) else {
            findings.check(false, format!("no IPv6 ingress IP: {}", svc["status"]));
            continue;
        };
        let to = target(&ip, 80);
        let mut answered: Vec<String> = Vec::new();
        for _ in 0..8 {
            let (result, by, client) = probe(&cluster, "internet", &to, "tcp");
            findings.check(
                result == "connected" && by.starts_with("store-be-"),
                format!("internet -> LoadBalancer {to}: {result} {by:?}"),
            );
            findings.check(
                !keeps_client
                    || result != "connected"
                    || client.starts_with(&format!("[{INTERNET_V6}]:")),
                format!("LoadBalancer Local {to}: the backend saw {client}, not the client"),
            );
            if !answered.contains(&by) {
                answered.push(by);
            }
        }
        eprintln!("LoadBalancer {to} answered by {answered:?}");
    }

    // Change under load: steady new connections to the IPv6 ClusterIP while a backend turns
    // unready and ready again; nothing fails.
    let ips = cluster_ips(&cluster, "store-be");
    if let Some(v6) = ips.get(1) {
        let to = target(v6, 80);
        let load = std::thread::scope(|scope| {
            let load = scope.spawn(|| {
                cluster.testbed(&[
                    "load",
                    "store-fe",
                    &to,
                    "--duration",
                    "6s",
                    "--interval",
                    "50ms",
                    "--hold",
                    "2",
                ])
            });
            std::thread::sleep(Duration::from_secs(2));
            cluster.ok(&["set-ready", "store-be-3", "false"]);
            std::thread::sleep(Duration::from_secs(2));
            cluster.ok(&["set-ready", "store-be-3", "true"]);
            load.join().unwrap()
        });
        let report: Value = serde_json::from_slice(&load.stdout).unwrap_or_default();
        let count = |key: &str| report[key].as_u64().unwrap_or(0);
        let cut = report["held"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| !h["cut_at_ms"].is_null())
            .count();
        findings.check(
            load.status.success()
                && count("connected") > 0
                && count("refused") == 0
                && count("timeout") == 0
                && cut == 0,
            format!(
                "load to {to} across an unready backend: {report} {}",
                String::from_utf8_lossy(&load.stderr)
            ),
        );
    }

    // The seed's policies in IPv6: fe reaches be (pod and Service), be is kept from fe, and
    // nothing reaches db but be on 6379.
    cluster.ok(&["apply", "-f", &format!("{DEMO}/30-store-policy.yaml")]);
    std::thread::sleep(Duration::from_secs(1));
    let ip6 = |pod: &str| pod_ip6(&cluster, pod);
    let v6_vip = ips.get(1).cloned().unwrap_or_default();
    for (from, to, want) in [
        ("store-fe", target(&ip6("store-be-1"), 80), "connected"),
        ("store-fe", target(&v6_vip, 80), "connected"),
        ("store-be-1", target(&ip6("store-db"), 6379), "connected"),
        ("store-fe", target(&ip6("store-db"), 6379), "timeout"),
        ("store-be-1", target(&ip6("store-fe"), 80), "timeout"),
        ("store-db", target(&ip6("store-be-1"), 80), "timeout"),
    ] {
        let (result, _, _) = probe(&cluster, from, &to, "tcp");
        findings.check(
            result == want,
            format!("policy: {from} -> {to}: {result}, want {want}"),
        );
    }
    findings.finish("dual-stack internet, NodePort/LoadBalancer, change, policy in IPv6");
}
