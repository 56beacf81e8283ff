//! The IPv6 side of the synthetic cluster (`fixture`), and IPv6 TCP frames: node A's pods get
//! `fd00:10:244:1::a + i` next to their IPv4 address, remote node `n` owns
//! `fd00:10:244:(2+n)::/64` behind its IPv4 VTEP.
//!
//! Invariant: deterministic, like `fixture`; frames carry complete checksums.

use std::net::Ipv6Addr;
use std::sync::Arc;

use dataplane::cidr6::Cidr6;
use dataplane::packet::PortId;
use dataplane::snapshot::Snapshot;
use dataplane::tables::v6::{Pod6, Remote6, V6Node, V6Tables};
use dataplane::wire::checksum;
use dataplane::wire::ipv6::HEADER_LEN as IPV6_HEADER_LEN;
use dataplane::wire::{EthernetRepr, Ipv6Repr, MacAddr, TcpFlags, TcpPacket, ethernet, tcp};

use crate::fixture::{self, FIRST_POD, REMOTE_NODES, Scale};

const TCP: u8 = 6;

pub fn local_pod_ip6(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 0xa)) + u128::from(i))
}

/// Pod `host` on remote node `n`.
pub fn remote_pod_ip6(n: u32, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0x244, 2 + n as u16, 0, 0, 0, host)
}

fn cidr(text: &str) -> Cidr6 {
    text.parse().expect("fixture CIDRs are valid")
}

pub fn tables(scale: Scale) -> V6Tables {
    let node = V6Node::example(cidr("fd00:10:244:1::/64"), cidr("fd00:10:244::/56"));
    let pods = (0..scale.local_pods)
        .map(|i| Pod6 {
            name: Arc::from(format!("default/client-{i}")),
            ip: local_pod_ip6(i),
            mac: fixture::local_pod_mac(i),
            port: PortId(FIRST_POD + i as u16),
            ip4: Some(fixture::local_pod_ip(i)),
        })
        .collect();
    let remotes = (0..REMOTE_NODES)
        .map(|n| Remote6 {
            name: format!("node-{n}"),
            pod_cidr: cidr(&format!("fd00:10:244:{:x}::/64", 2 + n)),
            node_ip: fixture::remote_node_ip(n),
            node_ip6: None,
            node_ips: Vec::new(),
        })
        .collect();
    V6Tables::new(node, pods, remotes)
}

/// `fixture::snapshot` with the IPv6 side filled in.
pub fn snapshot(scale: Scale) -> Snapshot {
    let mut snap = fixture::snapshot(scale);
    snap.v6 = Arc::new(tables(scale));
    snap
}

/// An Ethernet + IPv6 + TCP segment (no payload) with a complete checksum.
pub fn tcp6_frame(
    macs: (MacAddr, MacAddr),
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    flags: TcpFlags,
) -> Vec<u8> {
    let l3 = ethernet::HEADER_LEN;
    let l4 = l3 + IPV6_HEADER_LEN;
    let mut f = vec![0u8; l4 + tcp::HEADER_LEN];
    let eth = EthernetRepr {
        src: macs.0,
        dst: macs.1,
        ethertype: ethernet::ETHERTYPE_IPV6,
    };
    let ip = Ipv6Repr {
        src: src.0,
        dst: dst.0,
        next_header: TCP,
        hop_limit: 64,
        payload_len: tcp::HEADER_LEN as u16,
    };
    // The buffer is sized for both headers: neither emit can fail.
    let _ = eth.emit(&mut f);
    let _ = ip.emit(&mut f[l3..]);
    let mut t = TcpPacket::new_unchecked(&mut f[l4..]);
    t.set_src_port(src.1);
    t.set_dst_port(dst.1);
    t.set_seq_number(1);
    t.set_ack_number(u32::from(flags.contains(TcpFlags::ACK)));
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(flags);
    t.set_window(64240);
    t.set_checksum(0);
    let pseudo = checksum::pseudo_header_v6(src.0, dst.0, TCP, tcp::HEADER_LEN as u32);
    let sum = checksum::combine(pseudo, checksum::sum(&f[l4..]));
    TcpPacket::new_unchecked(&mut f[l4..]).set_checksum(checksum::finish(sum));
    f
}
