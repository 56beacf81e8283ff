//! Scenario hostPort (issue 13): pods wired through `ferroplane-cni`; `web-hp` on node-1 has
//! hostPort 8080 (TCP and UDP) to its port 80, which the plugin gets as
//! `runtimeConfig.portMappings` and the node turns into DNAT on its address. Reached from the
//! internet host (its address kept, as the `portmap` plugin keeps it) and from a pod and the
//! host of node-2 through node-1's IP; the flow shows in `conntrack list`; a second pod asking
//! for the same hostPort is refused naming both pods and leaves nothing behind; after the
//! pod's DEL the hostPort is gone.

use crate::cluster::{Cluster, MANIFESTS};
use crate::cni_plugin::{conntrack, leases, links, plugin, pod_netns};

#[test]
fn a_host_port_reaches_its_pod_through_the_node_ip_until_del() {
    let manifest = format!("{MANIFESTS}/host-port.yaml");
    let cluster = Cluster::up_with_plugin("hp", &["-f", &manifest]);
    let node_ip = &cluster.node_ips()[0];
    let target = format!("{node_ip}:8080");
    let web_ip = cluster.pod_ip("web-hp");

    for protocol in ["tcp", "udp"] {
        let report = cluster.probe("internet", &target, protocol, 1);
        eprintln!("internet -> {target} {protocol}: {report}");
        assert_eq!(report["result"], "connected", "{protocol}: {report}");
        assert_eq!(report["answered_by"], "web-hp", "{report}");
        let client = report["client_addr"].as_str().unwrap();
        assert!(
            client.starts_with("203.0.113.10:"),
            "{protocol}: web-hp saw {client}, not the internet host"
        );
    }
    for from in ["client", "node:node-2"] {
        let report = cluster.probe(from, &target, "tcp", 1);
        eprintln!("{from} -> {target}: {report}");
        assert_eq!(report["result"], "connected", "{from}: {report}");
        assert_eq!(report["answered_by"], "web-hp", "{from}: {report}");
    }
    let flows = conntrack(&cluster, "node-1", &["--address", &web_ip]);
    eprintln!("conntrack list --address {web_ip}:\n{flows}");
    assert!(
        flows.lines().any(|l| l.contains("dport=8080")
            && l.contains(&format!("src={web_ip} "))
            && l.contains("[DNAT]")),
        "no DNAT flow of {target} to {web_ip}:\n{flows}"
    );

    // A second pod on node-1 asking for 8080/TCP: refused, naming both pods.
    let before = leases(&cluster, "node-1");
    let taken = format!("{MANIFESTS}/host-port-taken.yaml");
    let out = cluster.testbed(&["apply", "-f", &taken]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("apply host-port-taken: {stderr}");
    assert!(!out.status.success(), "a taken hostPort was accepted");
    assert!(
        stderr.contains("default/web-hp-2") && stderr.contains("default/web-hp "),
        "the error names both pods: {stderr}"
    );
    assert_eq!(
        leases(&cluster, "node-1"),
        before,
        "the refused ADD kept an address"
    );
    let refused_ns = pod_netns(&cluster, "web-hp-2");
    assert_eq!(links(&refused_ns), ["lo"], "the refused ADD left a device");
    // web-hp keeps its hostPort.
    let report = cluster.probe("internet", &target, "tcp", 1);
    assert_eq!(report["answered_by"], "web-hp", "{report}");

    // DEL: the hostPort goes with the attachment.
    let ip = web_ip.parse().unwrap();
    let netns = pod_netns(&cluster, "web-hp");
    plugin(&cluster, "node-1", "DEL", "web-hp", &netns, ip).unwrap();
    assert!(
        !leases(&cluster, "node-1").contains(&web_ip),
        "DEL kept {web_ip}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let report = cluster.probe("internet", &target, "tcp", 1);
        if report["result"] != "connected" {
            eprintln!("after DEL, internet -> {target}: {report}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{target} still answers 5 s after DEL: {report}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
