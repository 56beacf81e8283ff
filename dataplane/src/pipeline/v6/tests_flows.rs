//! Masquerade, ICMPv6 errors of translated flows, NodePorts and LoadBalancer IPs, REJECT and
//! NetworkPolicy on the IPv6 path, with real frames through `Pipeline`.

use etherparse::PacketBuilder;

use super::*;
use crate::cidr6::Cidr6;
use crate::flow::L4Proto;
use crate::tables::policy::{Block6, Peer, PodSet, PortRange, Rule};
use crate::tables::v6::Kind6;
use crate::wire::checksum::{combine, finish, pseudo_header_v6, sum};

const L3: usize = 14;
/// A host on the internet (IPv6 documentation range) and a router on the way to it.
const NET: &str = "2001:db8:9::1";
const ROUTER: &str = "2001:db8:ff::1";
/// A LoadBalancer IP.
const LB: &str = "2001:db8:100::5";

/// (src, dst, sport, dport) of a UDP/TCP frame, after checking its L4 checksum verifies.
fn endpoints(pkt: &Packet) -> (Ipv6Addr, Ipv6Addr, u16, u16) {
    let ip = ip6(pkt, L3);
    let seg = &pkt.data()[L3 + 40..];
    let pseudo = pseudo_header_v6(
        ip.src_addr(),
        ip.dst_addr(),
        ip.next_header(),
        seg.len() as u32,
    );
    assert_eq!(finish(combine(pseudo, sum(seg))), 0, "L4 checksum verifies");
    let port = |at: usize| u16::from_be_bytes([seg[at], seg[at + 1]]);
    (ip.src_addr(), ip.dst_addr(), port(0), port(2))
}

/// A UDP frame arriving on the uplink (from the underlay router, to the uplink MAC).
fn from_uplink((src, dst): (&str, &str), (sport, dport): (u16, u16)) -> Vec<u8> {
    udp_ports(h_next_hop(), uplink_mac(), (src, dst), (sport, dport))
}

fn h_next_hop() -> MacAddr {
    NodeConfig::example("a", NODE4, "10.244.1.0/24".parse().unwrap()).uplink_next_hop_mac
}

fn tcp_syn(mac: MacAddr, dst_mac: MacAddr, (src, dst): (&str, &str), ports: (u16, u16)) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac.0, dst_mac.0)
        .ipv6(v6(src).octets(), v6(dst).octets(), 64)
        .tcp(ports.0, ports.1, 1, 65535)
        .syn();
    let mut out = Vec::new();
    b.write(&mut out, b"").unwrap();
    out
}

/// Rebuilds the harness's IPv6 tables with `edit` applied to the node and these extra frontends.
fn reprogram(h: &mut H, edit: impl FnOnce(&mut V6Node), extra: Vec<Service6>) {
    let old = h.snap.v6.as_ref().clone();
    let mut node = old.node().unwrap().clone();
    edit(&mut node);
    let pods: Vec<Pod6> = old.pods().cloned().collect();
    let mut services = vec![
        Service6::cluster_ip(v6(SVC), 53, 17, vec![(v6(B), 5353)]),
        Service6::cluster_ip(v6(SVC), 80, 6, vec![(v6(B), 8080)]),
    ];
    services.extend(extra);
    h.snap.v6 = Arc::new(V6Tables::new(node, pods, old.remotes().to_vec()).with_services(services));
}

fn snat_range(h: &H) -> std::ops::RangeInclusive<u16> {
    h.snap.node.snat_ports.0..=h.snap.node.snat_ports.1
}

#[test]
fn pod_traffic_leaving_the_cluster_is_masqueraded_and_the_reply_translated_back() {
    let mut h = H::new();
    let (v, pkt) = h.run(POD_A, &from_a(NET));
    assert_eq!(v, Verdict::Tx(UPLINK));
    let (src, dst, sport, dport) = endpoints(&pkt);
    assert_eq!((src, dst), (v6(NODE6), v6(NET)));
    assert!(snat_range(&h).contains(&sport), "{sport}");
    // udp() sends from port 40000 to 53? Read what the pod sent instead of assuming.
    let sent = udp(MAC_A, gateway_mac(), (A, NET), 64, 16);
    let pod_sport = u16::from_be_bytes([sent[54], sent[55]]);
    assert_eq!(dport, u16::from_be_bytes([sent[56], sent[57]]));
    // The answer to the node's address and port goes back to the pod, translated.
    let (v, back) = h.run(UPLINK, &from_uplink((NET, NODE6), (dport, sport)));
    assert_eq!(v, Verdict::Tx(POD_A));
    assert_eq!(endpoints(&back), (v6(NET), v6(A), dport, pod_sport));
    assert_eq!(&back.data()[..6], &MAC_A.0);
    // A second flow of the same pod gets its own port.
    let (_, other) = h.run(
        POD_A,
        &udp_ports(MAC_A, gateway_mac(), (A, NET), (41000, 53)),
    );
    assert_ne!(endpoints(&other).2, sport);
    assert_eq!(h.pipe.ct6.len(), 2);
    // An answer to a port of no flow is the node's own traffic: its host gets it.
    let stray = from_uplink((NET, NODE6), (53, 1));
    assert_eq!(h.verdict(UPLINK, &stray), Verdict::Tx(HOST));
}

#[test]
fn echo_leaving_the_cluster_gets_its_identifier_masqueraded() {
    let mut h = H::new();
    let b = PacketBuilder::ethernet2(MAC_A.0, gateway_mac().0)
        .ipv6(v6(A).octets(), v6(NET).octets(), 64)
        .icmpv6(Icmpv6Type::EchoRequest(IcmpEchoHeader { id: 7, seq: 1 }));
    let mut echo = Vec::new();
    b.write(&mut echo, b"ping").unwrap();
    let (v, pkt) = h.run(POD_A, &echo);
    assert_eq!(v, Verdict::Tx(UPLINK));
    let ip = ip6(&pkt, L3);
    assert_eq!(ip.src_addr(), v6(NODE6));
    let icmp = Icmpv6Packet::new_checked(&pkt.data()[L3 + 40..]).unwrap();
    assert!(icmp.verify_checksum(v6(NODE6), v6(NET)));
    let ident = icmp.echo_ident();
    assert!(snat_range(&h).contains(&ident), "{ident}");
    let b = PacketBuilder::ethernet2(h_next_hop().0, uplink_mac().0)
        .ipv6(v6(NET).octets(), v6(NODE6).octets(), 64)
        .icmpv6(Icmpv6Type::EchoReply(IcmpEchoHeader { id: ident, seq: 1 }));
    let mut reply = Vec::new();
    b.write(&mut reply, b"ping").unwrap();
    let (v, back) = h.run(UPLINK, &reply);
    assert_eq!(v, Verdict::Tx(POD_A));
    let icmp = Icmpv6Packet::new_checked(&back.data()[L3 + 40..]).unwrap();
    assert_eq!((ip6(&back, L3).dst_addr(), icmp.echo_ident()), (v6(A), 7));
    assert!(icmp.verify_checksum(v6(NET), v6(A)));
}

#[test]
fn an_icmpv6_error_about_a_masqueraded_packet_reaches_the_pod_reverse_translated() {
    let mut h = H::new();
    let sent = from_a(NET);
    let (_, out) = h.run(POD_A, &sent);
    // A router on the way answers the node: packet too big, quoting what the node sent.
    let quote = out.data()[L3..].to_vec();
    let b = PacketBuilder::ethernet2(h_next_hop().0, uplink_mac().0)
        .ipv6(v6(ROUTER).octets(), v6(NODE6).octets(), 64)
        .icmpv6_raw(icmpv6::PACKET_TOO_BIG, 0, 1280u32.to_be_bytes());
    let mut error = Vec::new();
    b.write(&mut error, &quote).unwrap();
    let (v, pkt) = h.run(UPLINK, &error);
    assert_eq!(v, Verdict::Tx(POD_A));
    let ip = ip6(&pkt, L3);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (v6(ROUTER), v6(A)));
    let icmp = Icmpv6Packet::new_checked(&pkt.data()[L3 + 40..]).unwrap();
    assert!(icmp.verify_checksum(v6(ROUTER), v6(A)), "checksum afresh");
    // The quote is the packet as the pod sent it, its UDP checksum verifying again.
    let quoted = &pkt.data()[L3 + 48..];
    assert_eq!(&quoted[..7], &sent[L3..L3 + 7]);
    assert_eq!(&quoted[8..40], &sent[L3 + 8..L3 + 40], "addresses as sent");
    assert_eq!(&quoted[40..], &sent[L3 + 40..]);
    // An error whose quote matches no flow is for the node (its own traffic).
    let mut stray = error.clone();
    stray[L3 + 48 + 40] ^= 0x55; // another source port
    assert_eq!(h.verdict(UPLINK, &stray), Verdict::Tx(HOST));
    // A forged checksum is refused.
    let mut forged = error;
    forged[L3 + 42] ^= 0xff;
    assert_eq!(
        h.verdict(UPLINK, &forged),
        Verdict::Drop(DropReason::BadChecksum)
    );
}

#[test]
fn a_packet_too_big_for_the_pod_after_translation_is_answered_untranslated() {
    let mut h = H::new();
    let (_, out) = h.run(POD_A, &from_a(NET));
    let (_, _, sport, dport) = endpoints(&out);
    let b = PacketBuilder::ethernet2(h_next_hop().0, uplink_mac().0)
        .ipv6(v6(NET).octets(), v6(NODE6).octets(), 64)
        .udp(dport, sport);
    let mut big = Vec::new();
    b.write(&mut big, &vec![0u8; 1600]).unwrap();
    let (v, pkt) = h.run(UPLINK, &big);
    assert_eq!(v, Verdict::Tx(UPLINK));
    let ip = ip6(&pkt, L3);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (v6(NODE6), v6(NET)),
        "from the node's address to the sender"
    );
    // The quote is cut at the minimum MTU: its header says more than it holds.
    let quoted = Ipv6Packet::new_unchecked(&pkt.data()[L3 + 48..]);
    assert_eq!(
        (quoted.src_addr(), quoted.dst_addr()),
        (v6(NET), v6(NODE6)),
        "quoted as sent"
    );
    let q = &pkt.data()[L3 + 88..];
    assert_eq!(
        (
            u16::from_be_bytes([q[0], q[1]]),
            u16::from_be_bytes([q[2], q[3]])
        ),
        (dport, sport)
    );
}

#[test]
fn masquerade_needs_an_ipv6_node_address() {
    let mut h = H::new();
    reprogram(&mut h, |n| n.node_ips.clear(), Vec::new());
    assert_eq!(
        h.verdict(POD_A, &from_a(NET)),
        Verdict::Drop(DropReason::Ipv6NoNodeAddress)
    );
    // Cluster traffic needs none.
    assert_eq!(h.verdict(POD_A, &from_a(SVC)), Verdict::Tx(POD_B));
}

fn node_port(local: bool, backends: Vec<(Ipv6Addr, u16)>) -> Service6 {
    Service6 {
        ip: v6(NODE6),
        port: 30080,
        proto: 6,
        backends,
        kind: Kind6::NodePort,
        external_local: local,
        source_ranges: None,
    }
}

#[test]
fn a_node_port_under_cluster_policy_is_dnated_and_masqueraded() {
    let mut h = H::new();
    reprogram(&mut h, |_| {}, vec![node_port(false, vec![(v6(B), 8080)])]);
    let syn = tcp_syn(h_next_hop(), uplink_mac(), (NET, NODE6), (45000, 30080));
    let (v, pkt) = h.run(UPLINK, &syn);
    assert_eq!(v, Verdict::Tx(POD_B));
    let (src, dst, sport, dport) = endpoints(&pkt);
    assert_eq!((src, dst, dport), (v6(NODE6), v6(B), 8080));
    assert!(snat_range(&h).contains(&sport));
    // The backend's answer leaves through the uplink from the NodePort.
    let answer = tcp_syn(MAC_B, gateway_mac(), (B, NODE6), (8080, sport));
    let (v, back) = h.run(POD_B, &answer);
    assert_eq!(v, Verdict::Tx(UPLINK));
    assert_eq!(endpoints(&back), (v6(NODE6), v6(NET), 30080, 45000));
}

#[test]
fn a_node_port_under_local_policy_keeps_the_client_and_uses_local_backends_only() {
    let mut h = H::new();
    reprogram(
        &mut h,
        |_| {},
        vec![node_port(true, vec![(v6(B), 8080), (v6(REMOTE_POD), 8080)])],
    );
    for sport in 45000..45016 {
        let syn = tcp_syn(h_next_hop(), uplink_mac(), (NET, NODE6), (sport, 30080));
        let (v, pkt) = h.run(UPLINK, &syn);
        assert_eq!(v, Verdict::Tx(POD_B), "only the local backend");
        assert_eq!(
            endpoints(&pkt),
            (v6(NET), v6(B), sport, 8080),
            "client kept"
        );
    }
    // Only a remote backend: outside clients are dropped, pods still reach it (Cluster
    // semantics for cluster sources), over the overlay.
    reprogram(
        &mut h,
        |_| {},
        vec![node_port(true, vec![(v6(REMOTE_POD), 8080)])],
    );
    let syn = tcp_syn(h_next_hop(), uplink_mac(), (NET, NODE6), (46000, 30080));
    assert_eq!(
        h.verdict(UPLINK, &syn),
        Verdict::Drop(DropReason::NoLocalEndpoint)
    );
    let syn = tcp_syn(MAC_A, gateway_mac(), (A, NODE6), (46001, 30080));
    assert_eq!(h.verdict(POD_A, &syn), Verdict::Tx(UPLINK));
}

#[test]
fn load_balancer_ips_with_source_ranges_and_reject_without_endpoints() {
    let mut h = H::new();
    let lb = |port: u16, backends, ranges: Option<Vec<Cidr6>>| Service6 {
        ip: v6(LB),
        port,
        proto: 17,
        backends,
        kind: Kind6::External,
        external_local: false,
        source_ranges: ranges,
    };
    reprogram(
        &mut h,
        |_| {},
        vec![
            lb(
                53,
                vec![(v6(B), 5353)],
                Some(vec!["2001:db8:9::/48".parse().unwrap()]),
            ),
            lb(54, Vec::new(), None),
        ],
    );
    let (v, pkt) = h.run(UPLINK, &from_uplink((NET, LB), (40000, 53)));
    assert_eq!(v, Verdict::Tx(POD_B));
    assert_eq!(endpoints(&pkt), (v6(NODE6), v6(B), endpoints(&pkt).2, 5353));
    assert_eq!(
        h.verdict(UPLINK, &from_uplink((ROUTER, LB), (40000, 53))),
        Verdict::Drop(DropReason::LbSourceRange)
    );
    // No endpoints: port unreachable from the LB IP, back out of the uplink.
    let (v, pkt) = h.run(UPLINK, &from_uplink((NET, LB), (40000, 54)));
    assert_eq!(v, Verdict::Tx(UPLINK));
    let ip = ip6(&pkt, L3);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (v6(LB), v6(NET)));
    let icmp = Icmpv6Packet::new_checked(&pkt.data()[L3 + 40..]).unwrap();
    assert_eq!(
        (icmp.msg_type(), icmp.code()),
        (icmpv6::DEST_UNREACHABLE, icmpv6::CODE_PORT_UNREACHABLE)
    );
    // Another port of an LB IP is not the Service's: routed as if no Service were there.
    assert_eq!(
        h.verdict(UPLINK, &from_uplink((NET, LB), (40000, 55))),
        Verdict::Drop(DropReason::NoRoute)
    );
}

/// B isolated for ingress: only A's addresses (a selector's pod set) on TCP 8080. A isolated
/// for egress: only 2001:db8:9::/48 except 2001:db8:9:1::/64, and B.
fn policies() -> PolicyTable {
    let mut b = PolicyTable::builder();
    let id = b.add_policy("default/p");
    let a_set: PodSet = [Ipv4Addr::new(10, 244, 1, 10)].into_iter().collect();
    let a_set = a_set.with_ipv6([v6(A)]);
    let b_set: PodSet = [Ipv4Addr::new(10, 244, 1, 11)].into_iter().collect();
    let b_set = b_set.with_ipv6([v6(B)]);
    b.set_pod(
        Ipv4Addr::new(10, 244, 1, 11),
        PodRules {
            ingress: Some(vec![Rule {
                peers: vec![Peer::Pods(Arc::new(a_set))],
                ports: vec![PortRange::single(L4Proto::Tcp, 8080)],
                policy: id,
            }]),
            egress: None,
            ingress_isolated_by: vec![id],
            egress_isolated_by: vec![],
        },
    );
    b.set_pod(
        Ipv4Addr::new(10, 244, 1, 10),
        PodRules {
            ingress: None,
            egress: Some(vec![Rule {
                peers: vec![
                    Block6::peer(
                        "2001:db8:9::/48".parse().unwrap(),
                        vec!["2001:db8:9:1::/64".parse().unwrap()],
                    ),
                    Peer::Pods(Arc::new(b_set)),
                    // An IPv4 block never matches IPv6 traffic.
                    Peer::Block {
                        cidr: "0.0.0.0/0".parse().unwrap(),
                        except: Vec::new(),
                    },
                ],
                ports: Vec::new(),
                policy: id,
            }]),
            ingress_isolated_by: vec![],
            egress_isolated_by: vec![id],
        },
    );
    b.build()
}

#[test]
fn network_policy_is_enforced_in_ipv6_with_ip_blocks_and_selected_pods() {
    let mut h = H::with(OverlayMode::Vxlan, policies());
    // A -> B: TCP 8080 allowed (directly and through the ClusterIP), its reply passes.
    let syn = tcp_syn(MAC_A, gateway_mac(), (A, B), (47000, 8080));
    assert_eq!(h.verdict(POD_A, &syn), Verdict::Tx(POD_B));
    let back = tcp_syn(MAC_B, gateway_mac(), (B, A), (8080, 47000));
    assert_eq!(
        h.verdict(POD_B, &back),
        Verdict::Tx(POD_A),
        "reply of a tracked flow"
    );
    let syn = tcp_syn(MAC_A, gateway_mac(), (A, SVC), (47001, 80));
    assert_eq!(
        h.verdict(POD_A, &syn),
        Verdict::Tx(POD_B),
        "post-DNAT port 8080"
    );
    // Other ports, and B's own new flows to A, are refused.
    let syn = tcp_syn(MAC_A, gateway_mac(), (A, B), (47002, 9090));
    assert_eq!(
        h.verdict(POD_A, &syn),
        Verdict::Drop(DropReason::PolicyIngressDenied)
    );
    // A's egress: the block minus its except, then nothing else (not even remote pods).
    assert_eq!(h.verdict(POD_A, &from_a(NET)), Verdict::Tx(UPLINK));
    assert_eq!(
        h.verdict(POD_A, &from_a("2001:db8:9:1::1")),
        Verdict::Drop(DropReason::PolicyEgressDenied)
    );
    assert_eq!(
        h.verdict(POD_A, &from_a(REMOTE_POD)),
        Verdict::Drop(DropReason::PolicyEgressDenied)
    );
    // The node's own traffic reaches an isolated pod (K7) only... from the host port.
    let host = tcp_syn(
        h.snap.node.host_mac,
        gateway_mac(),
        (NODE6, B),
        (47003, 9090),
    );
    assert_eq!(h.verdict(HOST, &host), Verdict::Tx(POD_B));
}

#[test]
fn a_policy_change_is_applied_to_live_ipv6_flows() {
    let mut h = H::with(OverlayMode::Vxlan, policies());
    let syn = tcp_syn(MAC_A, gateway_mac(), (A, B), (48000, 8080));
    assert_eq!(h.verdict(POD_A, &syn), Verdict::Tx(POD_B));
    // B's ingress becomes deny-all: the flow's next packet is refused and the flow ended.
    let mut b = PolicyTable::builder();
    let id = b.add_policy("default/deny");
    b.set_pod(
        Ipv4Addr::new(10, 244, 1, 11),
        PodRules {
            ingress: Some(Vec::new()),
            egress: None,
            ingress_isolated_by: vec![id],
            egress_isolated_by: vec![],
        },
    );
    let table = b.build();
    assert_ne!(table.epoch(), h.snap.policy.epoch());
    h.snap.policy = Arc::new(table);
    assert_eq!(
        h.verdict(POD_A, &syn),
        Verdict::Drop(DropReason::PolicyIngressDenied)
    );
    assert_eq!(h.pipe.ct6.len(), 0);
}

#[test]
fn a_backend_s_port_unreachable_reaches_the_client_from_the_service_address() {
    let mut h = H::new();
    let sent = from_a(SVC);
    let (v, out) = h.run(POD_A, &sent);
    assert_eq!(v, Verdict::Tx(POD_B));
    // B has nothing on 5353: it answers port unreachable, quoting what it got.
    let b = PacketBuilder::ethernet2(MAC_B.0, gateway_mac().0)
        .ipv6(v6(B).octets(), v6(A).octets(), 64)
        .icmpv6_raw(
            icmpv6::DEST_UNREACHABLE,
            icmpv6::CODE_PORT_UNREACHABLE,
            [0; 4],
        );
    let mut error = Vec::new();
    b.write(&mut error, &out.data()[L3..]).unwrap();
    let (v, pkt) = h.run(POD_B, &error);
    assert_eq!(v, Verdict::Tx(POD_A));
    let ip = ip6(&pkt, L3);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (v6(SVC), v6(A)),
        "from the address A talked to"
    );
    let icmp = Icmpv6Packet::new_checked(&pkt.data()[L3 + 40..]).unwrap();
    assert!(icmp.verify_checksum(v6(SVC), v6(A)));
    let quoted = &pkt.data()[L3 + 48..];
    assert_eq!(
        &quoted[8..40],
        &sent[L3 + 8..L3 + 40],
        "addresses as A sent them"
    );
    assert_eq!(
        &quoted[40..],
        &sent[L3 + 40..],
        "ports and checksum as A sent them"
    );
}

#[test]
fn a_pod_reaching_itself_through_its_service_is_masqueraded_hairpin() {
    let mut h = H::new();
    let frame = udp_ports(MAC_B, gateway_mac(), (B, SVC), (42000, 53));
    let (v, pkt) = h.run(POD_B, &frame);
    assert_eq!(v, Verdict::Tx(POD_B));
    let (src, dst, sport, dport) = endpoints(&pkt);
    assert_eq!((src, dst, dport), (v6(NODE6), v6(B), 5353));
    // Its own answer, to the node's address, comes back from the Service.
    let answer = udp_ports(MAC_B, gateway_mac(), (B, NODE6), (5353, sport));
    let (v, back) = h.run(POD_B, &answer);
    assert_eq!(v, Verdict::Tx(POD_B));
    assert_eq!(endpoints(&back), (v6(SVC), v6(B), 53, 42000));
}
