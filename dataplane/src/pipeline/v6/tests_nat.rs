//! IPv6 conntrack and Service DNAT with real frames through `Pipeline`.

use etherparse::PacketBuilder;

use super::*;
use crate::wire::checksum::{combine, finish, pseudo_header_v6, sum};

const L3: usize = 14;

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

#[test]
fn udp_to_a_cluster_ip_is_dnated_and_the_reply_translated_back() {
    let mut h = H::new();
    let (v, pkt) = h.run(POD_A, &from_a(SVC));
    assert_eq!(v, Verdict::Tx(POD_B));
    assert_eq!(endpoints(&pkt), (v6(A), v6(B), 40000, 5353));
    assert_eq!(&pkt.data()[..6], &MAC_B.0);
    assert_eq!(h.pipe.ct6.len(), 1);
    // The backend's answer leaves with the ClusterIP and the Service port as its source.
    let (v, pkt) = h.run(
        POD_B,
        &udp_ports(MAC_B, gateway_mac(), (B, A), (5353, 40000)),
    );
    assert_eq!(v, Verdict::Tx(POD_A));
    assert_eq!(endpoints(&pkt), (v6(SVC), v6(A), 53, 40000));
    // The flow's next packet takes the same backend without a new flow.
    let (v, pkt) = h.run(POD_A, &from_a(SVC));
    assert_eq!(v, Verdict::Tx(POD_B));
    assert_eq!(endpoints(&pkt), (v6(A), v6(B), 40000, 5353));
    assert_eq!(h.pipe.ct6.len(), 1);
    // Traffic of no flow passes untranslated (the stateless path).
    let (v, pkt) = h.run(
        POD_B,
        &udp_ports(MAC_B, gateway_mac(), (B, A), (5353, 40001)),
    );
    assert_eq!(v, Verdict::Tx(POD_A));
    assert_eq!(endpoints(&pkt), (v6(B), v6(A), 5353, 40001));
}

#[test]
fn tcp_to_a_cluster_ip_is_dnated_with_a_valid_checksum() {
    let mut h = H::new();
    let b = PacketBuilder::ethernet2(MAC_A.0, gateway_mac().0)
        .ipv6(v6(A).octets(), v6(SVC).octets(), 64)
        .tcp(41000, 80, 1, 65535)
        .syn();
    let mut syn = Vec::new();
    b.write(&mut syn, b"").unwrap();
    let (v, pkt) = h.run(POD_A, &syn);
    assert_eq!(v, Verdict::Tx(POD_B));
    assert_eq!(endpoints(&pkt), (v6(A), v6(B), 41000, 8080));
    let b = PacketBuilder::ethernet2(MAC_B.0, gateway_mac().0)
        .ipv6(v6(B).octets(), v6(A).octets(), 64)
        .tcp(8080, 41000, 9, 65535)
        .syn()
        .ack(2);
    let mut syn_ack = Vec::new();
    b.write(&mut syn_ack, b"").unwrap();
    let (v, pkt) = h.run(POD_B, &syn_ack);
    assert_eq!(v, Verdict::Tx(POD_A));
    assert_eq!(endpoints(&pkt), (v6(SVC), v6(A), 80, 41000));
}

#[test]
fn backends_are_spread_by_flow_and_remote_ones_go_over_vxlan() {
    let mut h = H::new();
    let (mut local, mut remote) = (0, 0);
    for sport in 40000..40064 {
        let (v, _) = h.run(
            POD_A,
            &udp_ports(MAC_A, gateway_mac(), (A, SVC2), (sport, 53)),
        );
        match v {
            Verdict::Tx(POD_B) => local += 1,
            Verdict::Tx(UPLINK) => remote += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(local > 0 && remote > 0, "local {local} remote {remote}");
    assert_eq!(h.pipe.ct6.len(), 64);
}

#[test]
fn an_unserved_port_of_a_cluster_ip_is_rejected_with_port_unreachable() {
    let mut h = H::new();
    // SVC serves UDP 53 and TCP 80, not UDP 54.
    let frame = udp_ports(MAC_A, gateway_mac(), (A, SVC), (40000, 54));
    let (v, pkt) = h.run(POD_A, &frame);
    assert_eq!(v, Verdict::Tx(POD_A));
    let ip = ip6(&pkt, L3);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (v6(SVC), v6(A)));
    let icmp = Icmpv6Packet::new_checked(&pkt.data()[L3 + 40..]).unwrap();
    assert_eq!(
        (icmp.msg_type(), icmp.code()),
        (icmpv6::DEST_UNREACHABLE, icmpv6::CODE_PORT_UNREACHABLE)
    );
    assert!(icmp.verify_checksum(v6(SVC), v6(A)));
    // The quote is the packet as the client sent it.
    assert_eq!(&pkt.data()[L3 + 48..L3 + 48 + 40], &frame[L3..L3 + 40]);
    assert_eq!(h.pipe.stats.rejects, 1);
    assert_eq!(h.pipe.ct6.len(), 0);
}

#[test]
fn a_rst_marks_the_flow_closing_so_it_ends_soon() {
    let mut h = H::new();
    let segment = |src: &str, dst: &str, ports: (u16, u16), rst: bool, from: MacAddr| {
        let b = PacketBuilder::ethernet2(from.0, gateway_mac().0)
            .ipv6(v6(src).octets(), v6(dst).octets(), 64)
            .tcp(ports.0, ports.1, 1, 65535);
        let b = if rst { b.rst() } else { b.syn() };
        let mut out = Vec::new();
        b.write(&mut out, b"").unwrap();
        out
    };
    let syn = segment(A, SVC, (42000, 80), false, MAC_A);
    assert_eq!(h.verdict(POD_A, &syn), Verdict::Tx(POD_B));
    let rst = segment(B, A, (8080, 42000), true, MAC_B);
    let (v, pkt) = h.run(POD_B, &rst);
    assert_eq!(v, Verdict::Tx(POD_A));
    assert_eq!(endpoints(&pkt), (v6(SVC), v6(A), 80, 42000));
    assert_eq!(h.pipe.ct6.len(), 1);
    // Without the RST this replied TCP flow would live for a day; closing, it is swept
    // once the closing timeout has passed.
    let closing = crate::tables::conntrack6::TCP_CLOSING_TIMEOUT;
    assert_eq!(h.pipe.ct6.sweep(1000 + closing, 8192), 0);
    assert_eq!(h.pipe.ct6.sweep(1000 + closing + 1, 8192), 1);
    assert!(h.pipe.ct6.is_empty());
}
