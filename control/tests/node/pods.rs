//! Pods on one node reach each other and a Service through ferroplane: ICMP, TCP, UDP, and
//! ClusterIP DNAT, for each pod backend (TAP, AF_PACKET, AF_XDP); AF_PACKET fanout over two
//! workers keeps NAT'd flows working in both directions.

use control::node::pod_interface_name;

use crate::harness::{Backend, Node, service};

fn pods_talk_directly_and_through_a_cluster_ip(tag: &str, backend: Backend) {
    let mut node = Node::start(
        tag,
        backend,
        2,
        1,
        &service("echo", &format!("{tag}-b"), 80, 8080),
    );
    node.serve(1, 8080);
    if backend == Backend::AfXdp {
        // The pods' veths carry ferroplane's redirect program, in generic mode.
        for pod in &node.pods {
            let iface = pod_interface_name("default", &pod.name);
            let link = node.node.ip(&["link", "show", &iface]);
            assert!(link.contains("xdpgeneric"), "{link}");
        }
    }
    let (a, b) = (node.pods[0].ip.clone(), node.pods[1].ip.clone());
    assert!(node.ping(0, &b), "ping {a} -> {b} failed\n{}", node.debug());
    assert!(node.ping(1, &a), "ping {b} -> {a} failed");
    assert_eq!(node.tcp(0, &b, 8080, "hello"), format!("hello from {a}"));
    assert_eq!(
        node.udp(0, &b, 8080, "datagram"),
        format!("datagram from {a}")
    );
    let vip = node.cluster_ip("echo");
    // DNAT to the backend; pod-to-pod traffic is not masqueraded, so the server sees pod a.
    assert_eq!(
        node.tcp(0, &vip, 80, "via-vip"),
        format!("via-vip from {a}")
    );
    assert_eq!(
        node.udp(0, &vip, 80, "udp-vip"),
        format!("udp-vip from {a}")
    );
    let flows = node.cli(&["conntrack", "list"]);
    let listing = String::from_utf8_lossy(&flows.stdout);
    assert!(
        flows.status.success(),
        "{}",
        String::from_utf8_lossy(&flows.stderr)
    );
    let dnat = listing
        .lines()
        .find(|l| l.starts_with("tcp") && l.contains(&format!("dst={vip} ")))
        .unwrap_or_else(|| panic!("no TCP flow to {vip} in\n{listing}"));
    assert!(
        dnat.contains(&format!("src={b} dst={a} sport=8080")) && dnat.contains("[DNAT]"),
        "{dnat}"
    );
    let udp = listing
        .lines()
        .find(|l| l.starts_with("udp") && l.contains(&format!("dst={vip} ")))
        .unwrap_or_else(|| panic!("no UDP flow to {vip} in\n{listing}"));
    assert!(udp.contains("[ASSURED]"), "{udp}");
}

#[test]
fn tap_pods_ping_tcp_udp_and_cluster_ip() {
    pods_talk_directly_and_through_a_cluster_ip("tp", Backend::Tap);
}

#[test]
fn af_packet_pods_ping_tcp_udp_and_cluster_ip() {
    pods_talk_directly_and_through_a_cluster_ip("ap", Backend::AfPacket);
}

#[test]
fn af_xdp_pods_ping_tcp_udp_and_cluster_ip() {
    pods_talk_directly_and_through_a_cluster_ip("xp", Backend::AfXdp);
}

/// Twenty connections through a ClusterIP with two workers: requests and replies of one flow
/// may be received by different workers (fanout hashes the translated tuples differently);
/// every one must still be answered, and both workers must have carried traffic.
#[test]
fn af_packet_fanout_over_two_workers_keeps_nat_flows_working() {
    let mut node = Node::start(
        "fo",
        Backend::AfPacket,
        2,
        2,
        &service("echo", "fo-b", 80, 8080),
    );
    node.serve(1, 8080);
    let vip = node.cluster_ip("echo");
    let a = node.pods[0].ip.clone();
    let script = format!(
        "import socket\nok = 0\nfor i in range(20):\n    s = socket.create_connection(('{vip}', 80), timeout=3)\n    s.sendall(b'n%d\\n' % i)\n    if s.makefile().readline().strip() == 'n%d from {a}' % i: ok += 1\n    s.close()\nprint(ok)\n"
    );
    let out = node.pods[0].ns.run(&["python3", "-c", &script]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "20",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(250));
    for worker in ["worker=\"0\"", "worker=\"1\""] {
        let rx = node.metric("ferroplane_port_rx_packets_total", &[worker]);
        assert!(
            rx > 0,
            "{worker} received nothing: fanout did not spread the flows"
        );
    }
}
