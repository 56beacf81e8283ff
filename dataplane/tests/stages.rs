//! Table-driven pipeline tests on real frame bytes: input frame, the fixture's tables,
//! expected verdict and expected output, decoded by etherparse with checksums recomputed.

mod common;

use common::frames::{self, L4, arp_request, seen, vxlan};
use common::*;
use dataplane::drop::DropReason;
use dataplane::packet::Verdict;
use dataplane::tables::node::OverlayMode;
use dataplane::wire::MacAddr;

fn gw_mac(h: &Harness) -> MacAddr {
    h.snap.node.gateway_mac
}

fn from_client(h: &Harness, dst: &str, l4: L4) -> Vec<u8> {
    frames::ipv4(
        CLIENT_MAC,
        gw_mac(h),
        ip(CLIENT_IP),
        ip(dst),
        64,
        true,
        l4,
        b"hello",
    )
}

/// The inner frame of a VXLAN frame, after checking the outer headers.
fn inner_of(h: &Harness, out: &[u8], to_node: &str) -> Vec<u8> {
    let outer = seen(out);
    assert_eq!(outer.src, ip(NODE_A), "outer source is the node IP");
    assert_eq!(outer.dst, ip(to_node));
    assert_eq!(outer.proto, 17);
    assert_eq!(outer.dport, 8472);
    assert!(outer.sport >= 49152, "outer source port from the flow hash");
    assert_eq!(outer.src_mac, h.snap.node.uplink_mac);
    assert_eq!(outer.dst_mac, NODE_B_UPLINK_MAC);
    assert_eq!(
        &outer.payload[..8],
        &[0x08, 0, 0, 0, 0, 0, 1, 0],
        "VXLAN I flag, VNI 1"
    );
    outer.payload[8..].to_vec()
}

#[test]
fn pod_to_local_pod_is_routed_without_nat() {
    let mut h = Harness::new();
    let f = from_client(
        &h,
        BE1_IP,
        L4::Syn {
            sport: 40000,
            dport: 80,
            seq: 1,
        },
    );
    let out = h.expect_tx(CLIENT, &f, BE1);
    let s = seen(&out);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (ip(CLIENT_IP), 40000, ip(BE1_IP), 80)
    );
    assert_eq!(s.src_mac, gw_mac(&h));
    assert_eq!(s.dst_mac, BE1_MAC);
    assert_eq!(s.ttl, 63);
    assert_eq!(s.payload, b"hello");
}

#[test]
fn pod_to_cluster_ip_is_dnatted_and_encapsulated_then_the_reply_is_un_dnatted() {
    let mut h = Harness::new();
    let f = from_client(
        &h,
        VIP_STORE,
        L4::Syn {
            sport: 40001,
            dport: 80,
            seq: 100,
        },
    );
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    let inner = seen(&inner_of(&h, &out, NODE_B));
    assert_eq!(
        (inner.src, inner.sport),
        (ip(CLIENT_IP), 40001),
        "no SNAT pod to pod"
    );
    assert_eq!(
        (inner.dst, inner.dport),
        (ip(REMOTE_BE), 8080),
        "DNAT to backend:targetPort"
    );
    assert_eq!(inner.dst_mac, NODE_B_VTEP_MAC);
    assert_eq!(inner.src_mac, h.snap.node.vtep_mac);

    let reply = frames::ipv4(
        NODE_B_VTEP_MAC,
        h.snap.node.vtep_mac,
        ip(REMOTE_BE),
        ip(CLIENT_IP),
        63,
        true,
        L4::SynAck {
            sport: 8080,
            dport: 40001,
            seq: 5000,
            ack: 101,
        },
        b"",
    );
    let wrapped = vxlan(
        NODE_B_UPLINK_MAC,
        h.snap.node.uplink_mac,
        ip(NODE_B),
        ip(NODE_A),
        8472,
        1,
        &reply,
    );
    let back = h.expect_tx(UPLINK, &wrapped, CLIENT);
    let s = seen(&back);
    assert_eq!(
        (s.src, s.sport),
        (ip(VIP_STORE), 80),
        "reply comes from the VIP"
    );
    assert_eq!((s.dst, s.dport), (ip(CLIENT_IP), 40001));
    assert_eq!(s.dst_mac, CLIENT_MAC);
}

#[test]
fn vxlan_is_accepted_only_from_known_peers_on_the_right_vni() {
    let mut h = Harness::new();
    let inner = frames::ipv4(
        NODE_B_VTEP_MAC,
        h.snap.node.vtep_mac,
        ip(REMOTE_BE),
        ip(BE1_IP),
        64,
        true,
        L4::Udp {
            sport: 1000,
            dport: 2000,
        },
        b"x",
    );
    let cases = [
        (
            ip("192.168.50.99"),
            8472,
            1,
            Verdict::Drop(DropReason::VxlanUnknownPeer),
        ),
        (
            ip(NODE_B),
            8472,
            7,
            Verdict::Drop(DropReason::VxlanBadHeader),
        ),
        (ip(NODE_B), 8472, 1, Verdict::Tx(BE1)),
    ];
    for (peer, port, vni, want) in cases {
        let f = vxlan(
            NODE_B_UPLINK_MAC,
            h.snap.node.uplink_mac,
            peer,
            ip(NODE_A),
            port,
            vni,
            &inner,
        );
        let (v, _) = h.run(UPLINK, &f);
        assert_eq!(v, want, "peer {peer} vni {vni}");
    }
    assert_eq!(h.pipe.drops.get(DropReason::VxlanUnknownPeer), 1);
}

#[test]
fn pods_cannot_spoof_source_ip_or_mac() {
    let mut h = Harness::new();
    let bad_ip = frames::ipv4(
        CLIENT_MAC,
        gw_mac(&h),
        ip("10.244.1.99"),
        ip(BE1_IP),
        64,
        true,
        L4::Udp { sport: 1, dport: 2 },
        b"",
    );
    let bad_mac = frames::ipv4(
        MacAddr([0x0a, 9, 9, 9, 9, 9]),
        gw_mac(&h),
        ip(CLIENT_IP),
        ip(BE1_IP),
        64,
        true,
        L4::Udp { sport: 1, dport: 2 },
        b"",
    );
    for f in [bad_ip, bad_mac] {
        assert_eq!(
            h.run(CLIENT, &f).0,
            Verdict::Drop(DropReason::SpoofedSource)
        );
    }
    assert_eq!(h.pipe.drops.get(DropReason::SpoofedSource), 2);
}

#[test]
fn service_without_endpoints_rejects_tcp_with_rst_and_udp_with_port_unreachable() {
    let mut h = Harness::new();
    let syn = from_client(
        &h,
        VIP_EMPTY,
        L4::Syn {
            sport: 40002,
            dport: 80,
            seq: 1000,
        },
    );
    let out = h.expect_tx(CLIENT, &syn, CLIENT);
    let s = seen(&out);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (ip(VIP_EMPTY), 80, ip(CLIENT_IP), 40002)
    );
    assert_eq!(s.tcp_flags & 0x14, 0x14, "RST+ACK");
    // ACK covers the SYN and the 5 payload bytes it carried (RFC 9293 3.10.7.1).
    assert_eq!(
        u32::from_be_bytes(out[14 + 28..14 + 32].try_into().expect("ack")),
        1006
    );
    assert_eq!(s.dst_mac, CLIENT_MAC);

    let udp = from_client(
        &h,
        VIP_EMPTY,
        L4::Udp {
            sport: 40003,
            dport: 80,
        },
    );
    let out = h.expect_tx(CLIENT, &udp, CLIENT);
    let s = seen(&out);
    assert_eq!(s.icmp_type, Some((3, 3)), "port unreachable");
    assert_eq!((s.src, s.dst), (ip(VIP_EMPTY), ip(CLIENT_IP)));
    let quoted = &s.payload;
    assert_eq!(
        &quoted[12..16],
        &ip(CLIENT_IP).octets(),
        "quotes the original source"
    );
    assert_eq!(
        &quoted[16..20],
        &ip(VIP_EMPTY).octets(),
        "quotes the original destination"
    );
    assert_eq!(h.pipe.stats.rejects, 2);
}

#[test]
fn vip_on_a_non_service_port_is_rejected_like_kube_proxy() {
    let mut h = Harness::new();
    let f = from_client(
        &h,
        VIP_STORE,
        L4::Syn {
            sport: 40004,
            dport: 22,
            seq: 1,
        },
    );
    let out = h.expect_tx(CLIENT, &f, CLIENT);
    let s = seen(&out);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (ip(VIP_STORE), 22, ip(CLIENT_IP), 40004)
    );
    assert_eq!(s.tcp_flags & 0x14, 0x14, "RST+ACK");
    let udp = from_client(
        &h,
        VIP_STORE,
        L4::Udp {
            sport: 40005,
            dport: 80,
        },
    );
    let out = h.expect_tx(CLIENT, &udp, CLIENT);
    assert_eq!(seen(&out).icmp_type, Some((3, 3)), "UDP on a TCP-only port");
    assert_eq!(h.pipe.stats.rejects, 2);
}

#[test]
fn an_unallocated_service_address_is_dropped_never_masqueraded() {
    let mut h = Harness::new();
    for proto in [
        L4::Syn {
            sport: 40006,
            dport: 80,
            seq: 1,
        },
        L4::Udp {
            sport: 40007,
            dport: 53,
        },
    ] {
        let f = from_client(&h, "10.96.7.7", proto);
        assert_eq!(
            h.run(CLIENT, &f).0,
            Verdict::Drop(DropReason::ServiceUnallocated)
        );
    }
    assert_eq!(h.pipe.drops.get(DropReason::ServiceUnallocated), 2);
    assert_eq!(h.pipe.stats.new_flows, 0, "no flow, no SNAT port");
}

#[test]
fn egress_to_the_internet_is_masqueraded_and_the_reply_restored() {
    let mut h = Harness::new();
    let f = from_client(
        &h,
        EXTERNAL,
        L4::Syn {
            sport: 40005,
            dport: 443,
            seq: 1,
        },
    );
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    let s = seen(&out);
    assert_eq!(s.src, ip(NODE_A), "masqueraded to the node IP");
    assert_eq!((s.dst, s.dport), (ip(EXTERNAL), 443));
    assert_eq!(s.dst_mac, ROUTER_MAC);
    let nat_port = s.sport;
    let (lo, hi) = h.snap.node.snat_ports;
    assert!((lo..=hi).contains(&nat_port));

    let reply = frames::ipv4(
        ROUTER_MAC,
        h.snap.node.uplink_mac,
        ip(EXTERNAL),
        ip(NODE_A),
        60,
        true,
        L4::SynAck {
            sport: 443,
            dport: nat_port,
            seq: 9,
            ack: 2,
        },
        b"",
    );
    let back = h.expect_tx(UPLINK, &reply, CLIENT);
    let s = seen(&back);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (ip(EXTERNAL), 443, ip(CLIENT_IP), 40005)
    );
}

#[test]
fn policy_is_enforced_on_the_first_packet_and_replies_pass() {
    let mut h = Harness::new();
    // client -> db: isolated, not allowed.
    let f = from_client(
        &h,
        DB_IP,
        L4::Syn {
            sport: 40006,
            dport: 6379,
            seq: 1,
        },
    );
    assert_eq!(
        h.run(CLIENT, &f).0,
        Verdict::Drop(DropReason::PolicyIngressDenied)
    );
    // store-be-1 -> db:6379 allowed; the reply from db passes back although db is isolated.
    let f = frames::ipv4(
        BE1_MAC,
        gw_mac(&h),
        ip(BE1_IP),
        ip(DB_IP),
        64,
        true,
        L4::Syn {
            sport: 40007,
            dport: 6379,
            seq: 1,
        },
        b"",
    );
    h.expect_tx(BE1, &f, DB);
    let r = frames::ipv4(
        DB_MAC,
        gw_mac(&h),
        ip(DB_IP),
        ip(BE1_IP),
        64,
        true,
        L4::SynAck {
            sport: 6379,
            dport: 40007,
            seq: 7,
            ack: 2,
        },
        b"",
    );
    h.expect_tx(DB, &r, BE1);
    // store-be-1 -> db on another port: denied.
    let f = frames::ipv4(
        BE1_MAC,
        gw_mac(&h),
        ip(BE1_IP),
        ip(DB_IP),
        64,
        true,
        L4::Syn {
            sport: 40008,
            dport: 22,
            seq: 1,
        },
        b"",
    );
    assert_eq!(
        h.run(BE1, &f).0,
        Verdict::Drop(DropReason::PolicyIngressDenied)
    );
}

#[test]
fn node_local_traffic_reaches_isolated_pods() {
    let mut h = Harness::new();
    let host_mac = h.snap.node.host_mac;
    let f = frames::ipv4(
        host_mac,
        gw_mac(&h),
        ip(NODE_A),
        ip(DB_IP),
        64,
        true,
        L4::Syn {
            sport: 40009,
            dport: 8080,
            seq: 1,
        },
        b"",
    );
    h.expect_tx(HOST, &f, DB);
}

#[test]
fn arp_for_the_gateway_is_answered_in_place() {
    let mut h = Harness::new();
    let gw = h.snap.node.gateway_ip;
    let (v, out) = h.run(CLIENT, &arp_request(CLIENT_MAC, ip(CLIENT_IP), gw));
    assert_eq!(v, Verdict::Tx(CLIENT));
    assert_eq!(&out[0..6], &CLIENT_MAC.0, "to the asker");
    assert_eq!(&out[20..22], &[0, 2], "ARP reply");
    assert_eq!(&out[22..28], &gw_mac(&h).0, "gateway MAC");
    assert_eq!(&out[28..32], &gw.octets());
    // Proxy ARP: a neighbour's address on the pod CIDR is answered with the gateway MAC too,
    // so pods with a connected /24 route still send everything through the dataplane.
    let (v, out) = h.run(CLIENT, &arp_request(CLIENT_MAC, ip(CLIENT_IP), ip(BE1_IP)));
    assert_eq!(v, Verdict::Tx(CLIENT));
    assert_eq!(&out[22..28], &gw_mac(&h).0);
    // A pod probing its own address (duplicate address detection) gets no answer.
    let (v, _) = h.run(
        CLIENT,
        &arp_request(CLIENT_MAC, ip(CLIENT_IP), ip(CLIENT_IP)),
    );
    assert_eq!(v, Verdict::Drop(DropReason::NotForUs));
}

#[test]
fn too_big_for_the_overlay_with_df_gets_frag_needed_quoting_the_original() {
    let mut h = Harness::new();
    let big = vec![7u8; 1500 - 20 - 8];
    let f = frames::ipv4(
        CLIENT_MAC,
        gw_mac(&h),
        ip(CLIENT_IP),
        ip(VIP_DNS),
        64,
        true,
        L4::Udp {
            sport: 40010,
            dport: 53,
        },
        &big,
    );
    let out = h.expect_tx(CLIENT, &f, CLIENT);
    let s = seen(&out);
    assert_eq!(s.icmp_type, Some((3, 4)), "fragmentation needed");
    assert_eq!(
        u16::from_be_bytes([out[14 + 20 + 6], out[14 + 20 + 7]]),
        1450,
        "next-hop MTU"
    );
    assert_eq!(s.dst, ip(CLIENT_IP));
    // The quoted header is the one the client sent: to the VIP, not the backend.
    let q = &s.payload;
    assert_eq!(&q[16..20], &ip(VIP_DNS).octets());
    assert_eq!(u16::from_be_bytes([q[22], q[23]]), 53);
    // Without DF: dropped, never fragmented.
    let f = frames::ipv4(
        CLIENT_MAC,
        gw_mac(&h),
        ip(CLIENT_IP),
        ip(VIP_DNS),
        64,
        false,
        L4::Udp {
            sport: 40011,
            dport: 53,
        },
        &big,
    );
    assert_eq!(h.run(CLIENT, &f).0, Verdict::Drop(DropReason::MtuExceeded));
}

#[test]
fn icmp_errors_about_a_translated_flow_are_reverse_translated() {
    let mut h = Harness::new();
    let q = from_client(
        &h,
        VIP_DNS,
        L4::Udp {
            sport: 40012,
            dport: 53,
        },
    );
    let out = h.expect_tx(CLIENT, &q, UPLINK);
    let sent = inner_of(&h, &out, NODE_B);
    // The backend answers port unreachable about the packet it got.
    let err = icmp_unreachable_about(&sent, ip(REMOTE_DNS));
    let wrapped = vxlan(
        NODE_B_UPLINK_MAC,
        h.snap.node.uplink_mac,
        ip(NODE_B),
        ip(NODE_A),
        8472,
        1,
        &err,
    );
    let back = h.expect_tx(UPLINK, &wrapped, CLIENT);
    let s = seen(&back);
    assert_eq!(s.icmp_type, Some((3, 3)));
    assert_eq!(
        (s.src, s.dst),
        (ip(VIP_DNS), ip(CLIENT_IP)),
        "outer from the VIP"
    );
    let quoted = &s.payload;
    assert_eq!(&quoted[12..16], &ip(CLIENT_IP).octets());
    assert_eq!(
        &quoted[16..20],
        &ip(VIP_DNS).octets(),
        "quoted dst is the VIP again"
    );
    assert_eq!(
        u16::from_be_bytes([quoted[22], quoted[23]]),
        53,
        "quoted dport is 53 again"
    );
    assert_eq!(
        frames::ones_sum(&[&quoted[..20]]),
        0xffff,
        "quoted IP checksum"
    );
}

/// Builds the ICMP port unreachable a host at `from` sends about `frame` (its IP header +
/// 8 bytes), with checksums computed by the test's own sum.
fn icmp_unreachable_about(frame: &[u8], from: std::net::Ipv4Addr) -> Vec<u8> {
    let s = seen(frame);
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let quote = &frame[14..14 + ihl + 8];
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quote);
    let c = !frames::ones_sum(&[&icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&s.src_mac.0);
    f.extend_from_slice(&s.dst_mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + icmp.len()) as u16;
    let mut iph = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    iph[2..4].copy_from_slice(&total.to_be_bytes());
    iph.extend_from_slice(&from.octets());
    iph.extend_from_slice(&s.src.octets());
    let c = !frames::ones_sum(&[&iph]);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&icmp);
    f
}

#[test]
fn hairpin_through_own_service_is_snatted_to_the_node() {
    let mut h = Harness::new();
    let f = frames::ipv4(
        BE1_MAC,
        gw_mac(&h),
        ip(BE1_IP),
        ip(VIP_LOCAL),
        64,
        true,
        L4::Syn {
            sport: 40013,
            dport: 80,
            seq: 1,
        },
        b"",
    );
    let out = h.expect_tx(BE1, &f, BE1);
    let s = seen(&out);
    assert_eq!(s.src, ip(NODE_A), "hairpin SNAT");
    assert_eq!((s.dst, s.dport), (ip(BE1_IP), 80));
    let r = frames::ipv4(
        BE1_MAC,
        gw_mac(&h),
        ip(BE1_IP),
        ip(NODE_A),
        64,
        true,
        L4::SynAck {
            sport: 80,
            dport: s.sport,
            seq: 1,
            ack: 2,
        },
        b"",
    );
    let back = h.expect_tx(BE1, &r, BE1);
    let b = seen(&back);
    assert_eq!(
        (b.src, b.sport, b.dst, b.dport),
        (ip(VIP_LOCAL), 80, ip(BE1_IP), 40013)
    );
}

#[test]
fn external_nodeport_traffic_is_snatted_under_cluster_policy() {
    let mut h = Harness::new();
    let f = frames::ipv4(
        ROUTER_MAC,
        h.snap.node.uplink_mac,
        ip(EXTERNAL),
        ip(NODE_A),
        60,
        true,
        L4::Syn {
            sport: 5555,
            dport: NODE_PORT,
            seq: 1,
        },
        b"",
    );
    let out = h.expect_tx(UPLINK, &f, UPLINK);
    let inner = seen(&inner_of(&h, &out, NODE_B));
    assert_eq!(inner.src, ip(NODE_A), "client IP hidden under eTP Cluster");
    assert_eq!((inner.dst, inner.dport), (ip(REMOTE_BE), 8080));
}

#[test]
fn external_traffic_policy_local_without_local_endpoint_drops() {
    let mut h = Harness::new();
    let f = frames::ipv4(
        ROUTER_MAC,
        h.snap.node.uplink_mac,
        ip(EXTERNAL),
        ip(LB_LOCAL),
        60,
        true,
        L4::Syn {
            sport: 5556,
            dport: 443,
            seq: 1,
        },
        b"",
    );
    assert_eq!(
        h.run(UPLINK, &f).0,
        Verdict::Drop(DropReason::NoLocalEndpoint)
    );
    // A pod reaching the same LB IP gets Cluster semantics (user-needs D3).
    let f = from_client(
        &h,
        LB_LOCAL,
        L4::Syn {
            sport: 40014,
            dport: 443,
            seq: 1,
        },
    );
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    assert_eq!(seen(&inner_of(&h, &out, NODE_B)).dport, 8443);
}

#[test]
fn partial_checksums_are_completed_before_rewrite() {
    let mut h = Harness::new();
    let mut f = from_client(
        &h,
        VIP_STORE,
        L4::Syn {
            sport: 40015,
            dport: 80,
            seq: 1,
        },
    );
    // Replace the TCP checksum by the pseudo-header sum only, as veth delivers it.
    let l4 = 14 + 20;
    let pseudo_only =
        frames::ones_sum(&[&f[26..34], &[0, 6], &((f.len() - l4) as u16).to_be_bytes()]);
    f[l4 + 16..l4 + 18].copy_from_slice(&pseudo_only.to_be_bytes());
    let mut pkt = dataplane::packet::Packet::from_frame(&f).expect("fits");
    pkt.meta.in_port = CLIENT;
    pkt.meta.csum_partial = true;
    let snap = &h.snap;
    assert_eq!(h.pipe.process(snap, &mut pkt), Verdict::Tx(UPLINK));
    frames::assert_valid(pkt.data());
}

#[test]
fn routed_mode_sends_plain_pod_packets_to_the_next_hop() {
    let mut h = Harness::with_overlay(OverlayMode::Routed);
    let f = from_client(
        &h,
        REMOTE_BE,
        L4::Syn {
            sport: 40016,
            dport: 8080,
            seq: 1,
        },
    );
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    let s = seen(&out);
    assert_eq!(
        (s.src, s.dst, s.proto),
        (ip(CLIENT_IP), ip(REMOTE_BE), 6),
        "not encapsulated"
    );
    assert_eq!(s.dst_mac, ROUTER_MAC);
}

#[test]
fn pod_packets_to_another_nodes_address_go_to_that_node_not_the_router() {
    // VXLAN: encapsulated to the node, whose decap delivers to its host or its conntrack.
    let mut h = Harness::new();
    let syn = |h: &Harness| {
        from_client(
            h,
            NODE_B,
            L4::Syn {
                sport: 40017,
                dport: 10256,
                seq: 1,
            },
        )
    };
    let f = syn(&h);
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    let inner = seen(&inner_of(&h, &out, NODE_B));
    assert_eq!((inner.dst, inner.dport), (ip(NODE_B), 10256));
    // Routed: as it is, straight to the node's underlay MAC (the router drops pod sources).
    let mut h = Harness::with_overlay(OverlayMode::Routed);
    let f = syn(&h);
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    let s = seen(&out);
    assert_eq!((s.dst, s.proto), (ip(NODE_B), 6), "not encapsulated");
    assert_eq!(s.dst_mac, NODE_B_UPLINK_MAC);
}

#[test]
fn ttl_one_is_dropped_and_tcp_without_syn_creates_no_flow() {
    let mut h = Harness::new();
    let f = frames::ipv4(
        CLIENT_MAC,
        gw_mac(&h),
        ip(CLIENT_IP),
        ip(BE1_IP),
        1,
        true,
        L4::Udp { sport: 1, dport: 2 },
        b"",
    );
    assert_eq!(h.run(CLIENT, &f).0, Verdict::Drop(DropReason::TtlExceeded));
    let f = from_client(
        &h,
        VIP_STORE,
        L4::Ack {
            sport: 40017,
            dport: 80,
            seq: 1,
            ack: 1,
        },
    );
    assert_eq!(h.run(CLIENT, &f).0, Verdict::Drop(DropReason::CtInvalid));
}

#[test]
fn echo_to_a_remote_pod_and_its_reply_are_tracked() {
    let mut h = Harness::new();
    let f = from_client(&h, REMOTE_BE, L4::Echo { id: 77, seq: 1 });
    let out = h.expect_tx(CLIENT, &f, UPLINK);
    let inner = inner_of(&h, &out, NODE_B);
    assert_eq!(seen(&inner).icmp_type, Some((8, 0)));
    let mut reply = frames::ipv4(
        NODE_B_VTEP_MAC,
        h.snap.node.vtep_mac,
        ip(REMOTE_BE),
        ip(CLIENT_IP),
        64,
        true,
        L4::Echo { id: 77, seq: 1 },
        b"hello",
    );
    // Turn the request into an echo reply (type 0) and fix the ICMP checksum.
    reply[34] = 0;
    reply[36..38].copy_from_slice(&[0, 0]);
    let c = !frames::ones_sum(&[&reply[34..]]);
    reply[36..38].copy_from_slice(&c.to_be_bytes());
    let wrapped = vxlan(
        NODE_B_UPLINK_MAC,
        h.snap.node.uplink_mac,
        ip(NODE_B),
        ip(NODE_A),
        8472,
        1,
        &reply,
    );
    let back = h.expect_tx(UPLINK, &wrapped, CLIENT);
    assert_eq!(seen(&back).icmp_type, Some((0, 0)));
}
