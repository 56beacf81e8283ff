//! The IPv6 underlay against the kernel: a node's pipeline between a pod namespace and an
//! uplink, the peer a kernel with a VXLAN device on an IPv6 underlay (flannel's setup: an
//! onlink route via the node's VTEP, a permanent neighbour entry for it), or, routed, a kernel
//! that routes the node's IPv6 pod CIDR to the node's IPv6 address. The pod pings the peer's
//! addresses in both families with the kernel's own `ping`; the frames cross the IPv6
//! underlay as the kernel sends and checks them (UDP checksums mandatory, neighbour discovery
//! of the node's underlay address answered by the dataplane). Oversized pings come back as
//! frag-needed / packet-too-big with the pod MTU of a 70-byte overhead. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::PacketIo;
use super::af_packet::{AfPacketConfig, AfPacketPort};
use super::testnet::Netns;
use super::udp_tunnel::{TunnelUplink, UdpTunnelConfig};
use crate::cidr::Cidr;
use crate::packet::{PacketPool, PortId, Verdict};
use crate::pipeline::Pipeline;
use crate::snapshot::Snapshot;
use crate::tables::affinity::AffinityTable;
use crate::tables::conntrack::{Conntrack, ConntrackConfig};
use crate::tables::node::{NodeConfig, OverlayMode};
use crate::tables::policy::PolicyTable;
use crate::tables::ports::{LocalPod, PortKind, PortTable};
use crate::tables::routes::{RemoteNode, RouteTable};
use crate::tables::services::ServiceTable;
use crate::tables::v6::{Pod6, Remote6, V6Node, V6Tables};
use crate::wire::MacAddr;

const POD: PortId = PortId(1);
const POD_MAC: MacAddr = MacAddr([0x0a, 0x58, 10, 244, 1, 10]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0x61, 0, 0, 0, 2]);
const PEER_VTEP_MAC: MacAddr = MacAddr([0x02, 0x62, 0, 0, 0, 2]);
const NODE4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const PEER4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const NODE6: &str = "fd00:78::1";
const PEER6: &str = "fd00:78::2";
const POD4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
const POD6: &str = "fd00:10:244:1::a";
const PEER_POD4: &str = "10.244.2.1";
const PEER_POD6: &str = "fd00:10:244:2::1";

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Which underlay the node and the peer share, and how the node's uplink carries VXLAN.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// IPv6-only underlay, VXLAN through the raw uplink.
    RawV6Only,
    /// Dual-stack underlay, the udp-socket uplink: IPv4 pods over the IPv4 tunnel socket,
    /// IPv6 pods over IPv6 (raw).
    UdpSocketDual,
    /// Routed mode with IPv6 node addresses (IPv6 pods only).
    RoutedV6,
}

fn snapshot(setup: Setup, node: &NodeConfig) -> Snapshot {
    let dual = setup == Setup::UdpSocketDual;
    let ports = PortTable::new(
        vec![PortKind::Uplink, PortKind::Pod],
        vec![LocalPod {
            name: "default/p".into(),
            ip: POD4,
            mac: POD_MAC,
            port: POD,
        }],
    );
    let peer4 = if dual { PEER4 } else { Ipv4Addr::UNSPECIFIED };
    let routes = RouteTable::new(vec![RemoteNode {
        name: "b".into(),
        node_ip: peer4,
        node_ip6: Some(v6(PEER6)),
        pod_cidr: Cidr::new(Ipv4Addr::new(10, 244, 2, 0), 24).unwrap(),
        vtep_mac: PEER_VTEP_MAC,
        underlay_mac: PEER_MAC,
    }]);
    let mut node6 = V6Node::example(
        "fd00:10:244:1::/64".parse().unwrap(),
        "fd00:10:244::/56".parse().unwrap(),
    );
    node6.node_ips = vec![v6(NODE6)];
    let v6_tables = V6Tables::new(
        node6,
        vec![Pod6 {
            name: "default/p".into(),
            ip: v6(POD6),
            mac: POD_MAC,
            port: POD,
            ip4: Some(POD4),
        }],
        vec![Remote6 {
            name: "b".into(),
            pod_cidr: "fd00:10:244:2::/64".parse().unwrap(),
            node_ip: peer4,
            node_ip6: Some(v6(PEER6)),
            node_ips: vec![v6(PEER6)],
        }],
    );
    Snapshot {
        generation: 1,
        node: node.clone(),
        ports,
        routes: Arc::new(routes),
        services: Arc::new(ServiceTable::build(Vec::new(), &[], 251).unwrap()),
        policy: Arc::new(PolicyTable::builder().build()),
        v6: Arc::new(v6_tables),
    }
}

fn node_config(setup: Setup) -> NodeConfig {
    let mut node = NodeConfig::example("a", NODE4, "10.244.1.0/24".parse().unwrap());
    if setup != Setup::UdpSocketDual {
        node.node_ip = Ipv4Addr::UNSPECIFIED;
    }
    node.node_ip6 = Some(v6(NODE6));
    if setup == Setup::RoutedV6 {
        node.overlay = OverlayMode::Routed;
        node.uplink_next_hop_mac = PEER_MAC;
    }
    node
}

/// Turns IPv6 back on in `ns` (the harness turns it off) without duplicate address detection.
fn enable_ipv6(ns: &Netns, devices: &[&str]) {
    let devices: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    ns.run(move || {
        let mut knobs = vec!["all".to_owned(), "default".to_owned()];
        knobs.extend(devices);
        for knob in knobs {
            let dir = format!("/proc/sys/net/ipv6/conf/{knob}");
            std::fs::write(format!("{dir}/accept_dad"), "0").unwrap();
            std::fs::write(format!("{dir}/disable_ipv6"), "0").unwrap();
        }
    });
}

fn exec(ns: &Netns, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(args)
        .output()
        .expect("ip netns exec");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The three namespaces: the node (uplink `up0`, pod port `pd0`), the pod, the peer kernel.
struct Bed {
    node: Netns,
    pod: Netns,
    peer: Netns,
}

fn build(setup: Setup, uplink_mac: MacAddr) -> Bed {
    let bed = Bed {
        node: Netns::create(),
        pod: Netns::create(),
        peer: Netns::create(),
    };
    let (node, pod, peer) = (&bed.node, &bed.pod, &bed.peer);
    node.ip(&[
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "up1",
        "netns",
        peer.name(),
    ]);
    node.ip(&[
        "link",
        "add",
        "pd0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod.name(),
    ]);
    enable_ipv6(pod, &["eth0"]);
    enable_ipv6(peer, &["up1"]);
    node.ip(&["link", "set", "up0", "address", &uplink_mac.to_string()]);
    node.ip(&["link", "set", "up0", "up"]);
    node.ip(&["link", "set", "pd0", "up"]);
    if setup == Setup::UdpSocketDual {
        node.ip(&["addr", "add", &format!("{NODE4}/24"), "dev", "up0"]);
    }
    // The pod: both families via the gateways the dataplane answers for.
    pod.ip(&["link", "set", "eth0", "address", &POD_MAC.to_string()]);
    pod.ip(&["link", "set", "eth0", "up"]);
    pod.ip(&["addr", "add", &format!("{POD4}/24"), "dev", "eth0"]);
    pod.ip(&["route", "add", "default", "via", "10.244.1.1"]);
    pod.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{POD6}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
    pod.ip(&[
        "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
    ]);
    // The peer.
    peer.ip(&["link", "set", "up1", "address", &PEER_MAC.to_string()]);
    peer.ip(&["link", "set", "up1", "up"]);
    peer.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{PEER6}/64"),
        "dev",
        "up1",
        "nodad",
    ]);
    let vtep = NodeConfig::example("a", NODE4, "10.244.1.0/24".parse().unwrap()).vtep_mac;
    let port = crate::wire::vxlan::DEFAULT_PORT.to_string();
    let vxlan = |dev: &str, local: &str, remote: &str| {
        peer.ip(&[
            "link",
            "add",
            dev,
            "address",
            &PEER_VTEP_MAC.to_string(),
            "type",
            "vxlan",
            "id",
            "1",
            "local",
            local,
            "remote",
            remote,
            "dstport",
            &port,
            "dev",
            "up1",
        ]);
        enable_ipv6(peer, &[dev]);
        peer.ip(&["link", "set", dev, "up"]);
    };
    match setup {
        Setup::RawV6Only => {
            vxlan("vx6", PEER6, NODE6);
            route_pods_over(peer, "vx6", "vx6", &vtep.to_string());
        }
        Setup::UdpSocketDual => {
            peer.ip(&["addr", "add", &format!("{PEER4}/24"), "dev", "up1"]);
            vxlan("vx6", PEER6, NODE6);
            vxlan("vx4", &PEER4.to_string(), &NODE4.to_string());
            route_pods_over(peer, "vx4", "vx6", &vtep.to_string());
        }
        Setup::RoutedV6 => {
            enable_ipv6(peer, &["lo"]);
            peer.ip(&["link", "set", "lo", "up"]);
            peer.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{PEER_POD6}/128"),
                "dev",
                "lo",
            ]);
            peer.ip(&[
                "-6",
                "route",
                "add",
                "fd00:10:244:1::/64",
                "via",
                NODE6,
                "dev",
                "up1",
            ]);
        }
    }
    bed
}

/// flannel's routes on the peer: each pod family onlink via the node's VTEP over `dev4`/`dev6`.
fn route_pods_over(peer: &Netns, dev4: &str, dev6: &str, vtep: &str) {
    peer.ip(&["addr", "add", &format!("{PEER_POD4}/32"), "dev", dev4]);
    peer.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{PEER_POD6}/128"),
        "dev",
        dev6,
        "nodad",
    ]);
    peer.ip(&[
        "neigh",
        "add",
        "10.244.1.0",
        "lladdr",
        vtep,
        "dev",
        dev4,
        "nud",
        "permanent",
    ]);
    peer.ip(&[
        "route",
        "add",
        "10.244.1.0/24",
        "via",
        "10.244.1.0",
        "dev",
        dev4,
        "onlink",
    ]);
    peer.ip(&[
        "-6",
        "neigh",
        "add",
        "fd00:10:244:1::",
        "lladdr",
        vtep,
        "dev",
        dev6,
        "nud",
        "permanent",
    ]);
    peer.ip(&[
        "-6",
        "route",
        "add",
        "fd00:10:244:1::/64",
        "via",
        "fd00:10:244:1::",
        "dev",
        dev6,
        "onlink",
    ]);
}

/// Runs the pipeline between `ports` (the uplink, port 0, then the pod) until `stop`.
fn forward(snap: &Snapshot, mut ports: Vec<Box<dyn PacketIo + Send>>, stop: &AtomicBool) {
    let ct = Conntrack::new(ConntrackConfig {
        capacity: 4096,
        ..ConntrackConfig::default()
    });
    let mut pipe = Pipeline::new(Arc::new(ct), Arc::new(AffinityTable::new(64)), 5);
    // Large buffers: the tunnel socket's receive messages and the reserve it leaves.
    let mut pool = PacketPool::with_large(512, 64);
    let mut batch = Vec::new();
    let mut out: Vec<Vec<_>> = (0..ports.len()).map(|_| Vec::new()).collect();
    while !stop.load(Ordering::Relaxed) {
        for (i, port) in ports.iter_mut().enumerate() {
            port.rx_burst(PortId(i as u16), &mut pool, &mut batch, 32)
                .unwrap();
        }
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        pipe.begin_batch(1000);
        pipe.process_batch(snap, &mut batch);
        for pkt in batch.drain(..) {
            match pkt.meta.verdict {
                Verdict::Tx(port) if usize::from(port.0) < out.len() => {
                    out[usize::from(port.0)].push(pkt);
                }
                _ => pool.put(pkt),
            }
        }
        for (port, queue) in ports.iter_mut().zip(out.iter_mut()) {
            port.tx_burst(queue, &mut pool).unwrap();
        }
    }
    // Shown with a failing test's output.
    let drops: Vec<_> = pipe.drops.iter().map(|(r, n)| (r.name(), n)).collect();
    eprintln!("pipeline: {:?}, drops {drops:?}", pipe.stats);
}

fn ping(bed: &Bed, dst: &str, size: usize) -> (bool, String) {
    let size = size.to_string();
    exec(
        &bed.pod,
        &[
            "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", &size, dst,
        ],
    )
}

/// Builds the bed, forwards while `body` runs, and returns what `body` returned.
fn with_node<T>(setup: Setup, body: impl FnOnce(&Bed) -> T) -> T {
    let node = node_config(setup);
    let bed = build(setup, node.uplink_mac);
    let snap = snapshot(setup, &node);
    let raw = AfPacketConfig::default();
    let ports: Vec<Box<dyn PacketIo + Send>> = bed.node.run(|| {
        let uplink: Box<dyn PacketIo + Send> = match setup {
            Setup::UdpSocketDual => Box::new(
                TunnelUplink::open(
                    "up0",
                    &raw,
                    &UdpTunnelConfig {
                        node_ip: NODE4,
                        port: crate::wire::vxlan::DEFAULT_PORT,
                        uplink_mac: node.uplink_mac.0,
                    },
                )
                .unwrap(),
            ),
            _ => Box::new(AfPacketPort::open("up0", &raw).unwrap()),
        };
        vec![uplink, Box::new(AfPacketPort::open("pd0", &raw).unwrap())]
    });
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| forward(&snap, ports, &stop));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&bed)));
        stop.store(true, Ordering::Relaxed);
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn assert_ping(bed: &Bed, dst: &str, size: usize) {
    let (ok, text) = ping(bed, dst, size);
    assert!(ok, "ping {dst} -s {size} from the pod failed:\n{text}");
}

fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    let text = ns.ip_output(&["-s", "link", "show", dev]);
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("RX:"));
    lines
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn pods_of_both_families_cross_an_ipv6_only_underlay_to_a_kernel_vxlan_peer() {
    with_node(Setup::RawV6Only, |bed| {
        assert_ping(bed, PEER_POD4, 56);
        assert_ping(bed, PEER_POD6, 56);
        // The largest packets that fit a 1430-byte pod MTU, then one byte more.
        assert_ping(bed, PEER_POD4, 1430 - 28);
        assert_ping(bed, PEER_POD6, 1430 - 48);
        let (ok, text) = ping(bed, PEER_POD4, 1431 - 28);
        assert!(!ok && text.contains("mtu = 1430"), "frag-needed:\n{text}");
        let (ok, text) = ping(bed, PEER_POD6, 1431 - 48);
        assert!(!ok && text.contains("mtu=1430"), "packet too big:\n{text}");
        assert!(
            rx_packets(&bed.peer, "vx6") >= 8,
            "the kernel device decapsulated them"
        );
    });
}

#[test]
fn the_udp_socket_uplink_carries_ipv4_pods_over_ipv4_and_ipv6_pods_over_ipv6() {
    with_node(Setup::UdpSocketDual, |bed| {
        assert_ping(bed, PEER_POD4, 56);
        assert_ping(bed, PEER_POD6, 56);
        assert_ping(bed, PEER_POD6, 1430 - 48);
        assert!(rx_packets(&bed.peer, "vx4") >= 2, "IPv4 pods over IPv4");
        assert!(rx_packets(&bed.peer, "vx6") >= 4, "IPv6 pods over IPv6");
    });
}

#[test]
fn routed_mode_reaches_an_ipv6_peer_through_its_ipv6_node_address() {
    with_node(Setup::RoutedV6, |bed| {
        assert_ping(bed, PEER_POD6, 56);
        // Routed: the whole underlay MTU.
        assert_ping(bed, PEER_POD6, 1500 - 48);
    });
}
