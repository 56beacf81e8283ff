//! The tunnel uplink against the kernel: two namespaces joined by a veth, a `TunnelUplink` on
//! each end. A VXLAN super-packet sent on one arrives on the other merged (UDP_SEGMENT out,
//! the veth carrying the GSO datagram whole, UDP_GRO in), its bytes intact and delivered
//! once (the raw socket's filter keeps VXLAN off it), while UDP to another port still comes
//! in through the raw socket. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use super::{TunnelUplink, UdpTunnelConfig};
use crate::io::PacketIo;
use crate::io::af_packet::AfPacketConfig;
use crate::io::netdev;
use crate::io::testnet::Netns;
use crate::offload::testing::{check_tcp, finish_partial, super_packet};
use crate::packet::{Packet, PacketPool, PortId};

const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PORT: u16 = 8472;
/// The segment size the pipeline fits to a 1500-byte underlay under VXLAN (1450 - 52).
const GSO: usize = 1398;

fn open(ns: &Netns, dev: &str, ip: Ipv4Addr) -> TunnelUplink {
    ns.run(|| {
        let config = UdpTunnelConfig {
            node_ip: ip,
            port: PORT,
            uplink_mac: netdev::mac_address(dev).unwrap(),
        };
        TunnelUplink::open(dev, &AfPacketConfig::default(), &config).unwrap()
    })
}

/// The inner super-packet wrapped as the pipeline sends it from A to B.
fn vxlan_super_packet(len: usize) -> Packet {
    vxlan_super_packet_from(50000, 1000, len)
}

/// As `vxlan_super_packet`, with outer source port `sport` and inner sequence `seq`.
fn vxlan_super_packet_from(sport: u16, seq: u32, len: usize) -> Packet {
    let inner = super_packet(seq, len);
    let mut frame = vec![0u8; 50];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[20] = 0x40;
    frame[22] = 64;
    frame[23] = 17;
    frame[26..30].copy_from_slice(&A.octets());
    frame[30..34].copy_from_slice(&B.octets());
    frame[34..36].copy_from_slice(&sport.to_be_bytes());
    frame[36..38].copy_from_slice(&PORT.to_be_bytes());
    frame[42] = 0x08;
    frame[48] = 1;
    frame.extend_from_slice(inner.data());
    let udp_len = (frame.len() - 34).min(65_515) as u16;
    frame[16..18].copy_from_slice(&(udp_len + 20).to_be_bytes());
    frame[38..40].copy_from_slice(&udp_len.to_be_bytes());
    crate::wire::Ipv4Packet::new_unchecked(&mut frame[14..]).fill_checksum();
    let mut pkt = Packet::from_frame(&frame).unwrap();
    pkt.meta = inner.meta;
    pkt.meta.offload.encap_len = 50;
    pkt.meta.offload.gso_size = GSO as u16;
    pkt
}

fn two_nodes() -> (Netns, Netns) {
    let (na, nb) = (Netns::create(), Netns::create());
    na.ip(&[
        "link",
        "add",
        "fpt0",
        "type",
        "veth",
        "peer",
        "name",
        "fpt1",
        "netns",
        nb.name(),
    ]);
    na.ip(&["addr", "add", "10.77.0.1/24", "dev", "fpt0"]);
    nb.ip(&["addr", "add", "10.77.0.2/24", "dev", "fpt1"]);
    na.ip(&["link", "set", "fpt0", "up"]);
    nb.ip(&["link", "set", "fpt1", "up"]);
    (na, nb)
}

fn is_udp_to(frame: &[u8], port: u16) -> bool {
    frame.len() > 38
        && frame[12..14] == [8, 0]
        && frame[23] == 17
        && frame[36..38] == port.to_be_bytes()
}

#[test]
fn a_super_packet_crosses_as_gso_datagrams_and_merges_back_once() {
    let (na, nb) = two_nodes();
    let mut a = open(&na, "fpt0", A);
    let mut b = open(&nb, "fpt1", B);
    let mut pool = PacketPool::with_large(1024, 64);

    let len = 60_000;
    let mut out = vec![vxlan_super_packet(len)];
    assert_eq!(a.tx_burst(&mut out, &mut pool).unwrap(), 1);
    assert_eq!(
        a.tx_counts().messages,
        1,
        "one UDP_SEGMENT message: {:?}",
        a.tx_counts()
    );
    // Another UDP port: not the tunnel's, so B's raw socket must see it.
    na.run(|| {
        let s = UdpSocket::bind((A, 0)).unwrap();
        s.send_to(b"raw", (B, 9999)).unwrap();
    });

    let mut tunnel = Vec::new();
    let mut raw_other = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut batch = Vec::new();
    while Instant::now() < deadline
        && (tunnel.iter().map(|p: &Packet| p.len()).sum::<usize>() < len || raw_other == 0)
    {
        b.rx_burst(PortId(0), &mut pool, &mut batch, 64).unwrap();
        for p in batch.drain(..) {
            if is_udp_to(p.data(), PORT) {
                tunnel.push(p);
            } else if is_udp_to(p.data(), 9999) {
                raw_other += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(raw_other, 1, "UDP to another port comes in raw");
    let segments = len.div_ceil(GSO);
    assert!(
        !tunnel.is_empty() && tunnel.len() < segments,
        "{} VXLAN frames for {segments} segments: merged by UDP_GRO and the tunnel",
        tunnel.len()
    );
    let mut payload = Vec::new();
    for p in &tunnel {
        let inner = &p.data()[50..];
        let seg = if p.meta.offload.is_gso() {
            check_tcp(&finish_partial(inner, 34))
        } else {
            check_tcp(inner)
        };
        payload.extend_from_slice(&seg.payload);
    }
    let original = check_tcp(&finish_partial(super_packet(1000, len).data(), 34)).payload;
    assert_eq!(
        payload.len(),
        original.len(),
        "every byte once (no raw copy)"
    );
    assert_eq!(payload, original);
    let counts = b.rx_counts();
    assert_eq!(counts.datagrams, segments as u64, "{counts:?}");
    assert!(counts.messages < counts.datagrams, "{counts:?}");
}

/// The outer source port on the wire of each inner flow: the pipeline's choice (from the
/// inner flow hash) picks the send socket, so flows in different lanes leave from different
/// ports and one lane always from the same one; every super-packet is still one message.
#[test]
fn flows_leave_from_the_source_port_of_their_lane() {
    let (na, nb) = two_nodes();
    let mut a = open(&na, "fpt0", A);
    let mut b = open(&nb, "fpt1", B);
    let mut pool = PacketPool::with_large(1024, 64);
    let lanes = super::tx::SEND_LANES as u16;
    // (outer source port chosen by the pipeline, inner sequence that names the packet)
    let sent = [
        (50_000, 1_000_000),
        (50_001, 2_000_000),
        (50_000 + lanes, 3_000_000),
    ];
    let mut out: Vec<Packet> = sent
        .iter()
        .map(|&(sport, seq)| vxlan_super_packet_from(sport, seq, 8_000))
        .collect();
    assert_eq!(a.tx_burst(&mut out, &mut pool).unwrap(), 3);
    assert_eq!(a.tx_counts().messages, 3, "{:?}", a.tx_counts());
    assert_eq!(a.tx_counts().calls, 2, "one sendmmsg per lane used");

    let mut port_of_seq = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut batch = Vec::new();
    while Instant::now() < deadline && port_of_seq.len() < sent.len() {
        b.rx_burst(PortId(0), &mut pool, &mut batch, 64).unwrap();
        for p in batch.drain(..) {
            let d = p.data();
            if is_udp_to(d, PORT) {
                let sport = u16::from_be_bytes([d[34], d[35]]);
                let seq = u32::from_be_bytes([d[50 + 38], d[50 + 39], d[50 + 40], d[50 + 41]]);
                port_of_seq.entry(seq).or_insert(sport);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let port = |seq: u32| *port_of_seq.get(&seq).expect("every packet arrives");
    assert_ne!(port(1_000_000), port(2_000_000), "{port_of_seq:?}");
    assert_eq!(port(1_000_000), port(3_000_000), "{port_of_seq:?}");
    assert_ne!(port(1_000_000), PORT, "sent from a send socket");
}
