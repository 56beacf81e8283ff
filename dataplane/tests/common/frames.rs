//! Frame builders and checkers for tests. Building uses etherparse; checks decode with
//! etherparse and recompute every checksum with the small RFC 1071 sum below, which
//! shares no code with the dataplane.

use std::net::Ipv4Addr;

use dataplane::wire::MacAddr;
use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
};

#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Syn {
        sport: u16,
        dport: u16,
        seq: u32,
    },
    Ack {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
    },
    SynAck {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Echo {
        id: u16,
        seq: u16,
    },
    /// A TCP segment with any of FIN (0x01), SYN (0x02), RST (0x04), ACK (0x10) set.
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
    },
}

fn v4(a: Ipv4Addr) -> [u8; 4] {
    a.octets()
}

/// An Ethernet/IPv4 frame with the given L4 header and payload (DF set when `df`).
#[allow(
    clippy::too_many_arguments,
    reason = "a test builder: one argument per header field"
)]
pub fn ipv4(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    df: bool,
    l4: L4,
    payload: &[u8],
) -> Vec<u8> {
    let mut hdr = Ipv4Header::new(0, ttl, IpNumber::UDP, v4(src), v4(dst)).expect("ipv4 header");
    hdr.dont_fragment = df;
    let base =
        PacketBuilder::ethernet2(src_mac.0, dst_mac.0).ip(IpHeaders::Ipv4(hdr, Default::default()));
    let mut out = Vec::new();
    match l4 {
        L4::Syn { sport, dport, seq } => base
            .tcp(sport, dport, seq, 64240)
            .syn()
            .write(&mut out, payload),
        L4::Ack {
            sport,
            dport,
            seq,
            ack,
        } => base
            .tcp(sport, dport, seq, 64240)
            .ack(ack)
            .write(&mut out, payload),
        L4::SynAck {
            sport,
            dport,
            seq,
            ack,
        } => base
            .tcp(sport, dport, seq, 64240)
            .syn()
            .ack(ack)
            .write(&mut out, payload),
        L4::Udp { sport, dport } => base.udp(sport, dport).write(&mut out, payload),
        L4::Echo { id, seq } => base.icmpv4_echo_request(id, seq).write(&mut out, payload),
        L4::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
        } => {
            let mut b = base.tcp(sport, dport, seq, 64240);
            if flags & 0x01 != 0 {
                b = b.fin();
            }
            if flags & 0x02 != 0 {
                b = b.syn();
            }
            if flags & 0x04 != 0 {
                b = b.rst();
            }
            if flags & 0x10 != 0 {
                b = b.ack(ack);
            }
            b.write(&mut out, payload)
        }
    }
    .expect("build frame");
    out
}

/// Wraps `inner` in VXLAN from `from` to `to` (outer UDP source port 50000).
pub fn vxlan(
    from_mac: MacAddr,
    to_mac: MacAddr,
    from: Ipv4Addr,
    to: Ipv4Addr,
    port: u16,
    vni: u32,
    inner: &[u8],
) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(from_mac.0, to_mac.0)
        .ipv4(v4(from), v4(to), 64)
        .udp(50000, port)
        .write(&mut out, &payload)
        .expect("build vxlan");
    out
}

/// An ARP request from `sender` asking for `target`.
pub fn arp_request(sender_mac: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sender_mac.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sender_mac.0);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

/// RFC 1071 ones'-complement sum, written independently of the dataplane's.
pub fn ones_sum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for c in chunks {
        let mut i = 0;
        while i + 1 < c.len() {
            sum += u32::from(u16::from_be_bytes([c[i], c[i + 1]]));
            i += 2;
        }
        if i < c.len() {
            sum += u32::from(c[i]) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// What a test wants to know about a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub icmp_type: Option<(u8, u8)>,
    /// Bytes after the L4 header (for ICMP: after the 8-byte header).
    pub payload: Vec<u8>,
}

/// Decodes an Ethernet/IPv4 frame with etherparse.
pub fn seen(frame: &[u8]) -> Seen {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse decodes the frame");
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
        panic!("no ethernet")
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header();
    let mut s = Seen {
        src_mac: MacAddr(eth.source()),
        dst_mac: MacAddr(eth.destination()),
        src: Ipv4Addr::from(h.source()),
        dst: Ipv4Addr::from(h.destination()),
        ttl: h.ttl(),
        proto: h.protocol().0,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp_type: None,
        payload: vec![],
    };
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            s.sport = t.source_port();
            s.dport = t.destination_port();
            s.tcp_flags = t.slice()[13];
            s.payload = t.payload().to_vec();
        }
        Some(TransportSlice::Udp(u)) => {
            s.sport = u.source_port();
            s.dport = u.destination_port();
            s.payload = u.payload().to_vec();
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let b = i.slice();
            s.icmp_type = Some((b[0], b[1]));
            s.sport = u16::from_be_bytes([b[4], b[5]]);
            s.dport = s.sport;
            s.payload = b[8..].to_vec();
        }
        _ => {}
    }
    s
}

/// Asserts the IPv4 header checksum and the L4 checksum of an Ethernet/IPv4 frame are
/// correct, recomputed from scratch. VXLAN frames are checked outside and inside.
pub fn assert_valid(frame: &[u8]) {
    if frame.len() >= 14 && frame[12..14] == [0x08, 0x06] {
        return;
    }
    assert!(frame.len() >= 34, "frame too short: {}", frame.len());
    let l3 = 14;
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
    assert!(l3 + total <= frame.len(), "IPv4 total length beyond frame");
    assert_eq!(
        ones_sum(&[&frame[l3..l3 + ihl]]),
        0xffff,
        "IPv4 header checksum"
    );
    let seg = &frame[l3 + ihl..l3 + total];
    let proto = frame[l3 + 9];
    let pseudo = |len: usize| {
        let mut p = Vec::with_capacity(12);
        p.extend_from_slice(&frame[l3 + 12..l3 + 20]);
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
        p
    };
    match proto {
        6 => assert_eq!(ones_sum(&[&pseudo(seg.len()), seg]), 0xffff, "TCP checksum"),
        17 => {
            let csum = u16::from_be_bytes([seg[6], seg[7]]);
            if csum != 0 {
                assert_eq!(ones_sum(&[&pseudo(seg.len()), seg]), 0xffff, "UDP checksum");
            }
            let dport = u16::from_be_bytes([seg[2], seg[3]]);
            if dport == 8472 || dport == 4789 {
                assert_eq!(csum, 0, "outer VXLAN UDP checksum is zero");
                assert_valid(&seg[16..]);
            }
        }
        1 => assert_eq!(ones_sum(&[seg]), 0xffff, "ICMP checksum"),
        _ => {}
    }
}
