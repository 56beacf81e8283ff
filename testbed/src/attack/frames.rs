//! Hostile frames, built with etherparse (whole, valid checksums) unless they are meant to be
//! malformed: SYNs and blind RSTs with chosen addresses, ports and sequence numbers, UDP with
//! spoofed sources, ICMP errors that relate to nothing, and a few kinds of broken IPv4.
//!
//! Invariants: every builder is pure (same input, same bytes); a `malformed` frame is broken
//! in exactly the way its kind says and nothing else (so the drop reason it earns is known).

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{PacketBuilder, TcpHeader};

use crate::error::{Error, Result};

/// The two MACs of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2 {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().unwrap_or_default();
        *byte = u8::from_str_radix(part, 16).map_err(|_| Error(format!("MAC {text:?}")))?;
    }
    if parts.next().is_some() {
        return Err(Error(format!("MAC {text:?}")));
    }
    Ok(mac)
}

/// TCP flags of a crafted segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Syn,
    /// A reset with the given sequence number (blind: the attacker does not know the window).
    Rst,
}

/// One TCP segment `src -> dst` with sequence number `seq`.
pub fn tcp(l2: L2, src: SocketAddrV4, dst: SocketAddrV4, seq: u32, segment: Segment) -> Vec<u8> {
    let mut header = TcpHeader::new(src.port(), dst.port(), seq, 64240);
    match segment {
        Segment::Syn => header.syn = true,
        Segment::Rst => header.rst = true,
    }
    let builder = PacketBuilder::ethernet2(l2.src, l2.dst)
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .tcp_header(header);
    let mut frame = Vec::with_capacity(builder.size(0));
    // Writing into a Vec cannot fail and every header field above is in range.
    let _ = builder.write(&mut frame, &[]);
    frame
}

/// One UDP datagram `src -> dst` carrying `payload`.
pub fn udp(l2: L2, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(l2.src, l2.dst)
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port());
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    let _ = builder.write(&mut frame, payload);
    frame
}

/// An ICMP error (or redirect) as an IPv4 packet without Ethernet, for a raw IP socket:
/// `type_`/`code` from `src` to `dst`, quoting a UDP datagram `dst -> src` that was never
/// sent (so it relates to no flow), followed by `extra` bytes (a covert payload).
pub fn icmp_error_ip(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    (type_, code, rest): (u8, u8, [u8; 4]),
    extra: &[u8],
) -> Vec<u8> {
    let inner = PacketBuilder::ipv4(dst.octets(), src.octets(), 64).udp(40_000, 33_434);
    let mut quoted = Vec::with_capacity(inner.size(extra.len()));
    let _ = inner.write(&mut quoted, extra);
    let outer = PacketBuilder::ipv4(src.octets(), dst.octets(), 64).icmpv4_raw(type_, code, rest);
    let mut packet = Vec::with_capacity(outer.size(quoted.len()));
    let _ = outer.write(&mut packet, &quoted);
    packet
}

/// ICMP destination unreachable, port unreachable.
pub const PORT_UNREACHABLE: (u8, u8, [u8; 4]) = (3, 3, [0; 4]);

/// ICMP redirect for the host, to gateway `via`.
pub fn redirect(via: Ipv4Addr) -> (u8, u8, [u8; 4]) {
    (5, 1, via.octets())
}

/// The ways a crafted IPv4 frame is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The IPv4 total length claims more bytes than the frame holds.
    TotalLengthTooLong,
    /// An IPv4 header length below the minimum of 5 words.
    HeaderTooShort,
    /// The frame ends inside the IPv4 header.
    Truncated,
    /// A TCP data offset below the minimum of 5 words.
    TcpOffsetTooShort,
}

impl Broken {
    pub const ALL: [Broken; 4] = [
        Broken::TotalLengthTooLong,
        Broken::HeaderTooShort,
        Broken::Truncated,
        Broken::TcpOffsetTooShort,
    ];
}

/// A SYN `src -> dst` broken as `how` says.
pub fn malformed(l2: L2, src: SocketAddrV4, dst: SocketAddrV4, how: Broken) -> Vec<u8> {
    let mut frame = tcp(l2, src, dst, 1, Segment::Syn);
    const IP: usize = 14;
    match how {
        Broken::TotalLengthTooLong => {
            let claimed = u16::try_from(frame.len() - IP + 200).unwrap_or(u16::MAX);
            frame[IP + 2..IP + 4].copy_from_slice(&claimed.to_be_bytes());
            fix_ip_checksum(&mut frame);
        }
        Broken::HeaderTooShort => {
            frame[IP] = 0x43;
            fix_ip_checksum(&mut frame);
        }
        Broken::Truncated => frame.truncate(IP + 12),
        Broken::TcpOffsetTooShort => frame[IP + 20 + 12] = 0x20,
    }
    frame
}

/// Recomputes the IPv4 header checksum over the 20-byte header (the frame's header length
/// field may lie: the checksum still covers the bytes a receiver would check first).
fn fix_ip_checksum(frame: &mut [u8]) {
    const IP: usize = 14;
    frame[IP + 10..IP + 12].copy_from_slice(&[0, 0]);
    let mut sum: u32 = frame[IP..IP + 20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !u16::try_from(sum).unwrap_or(u16::MAX);
    frame[IP + 10..IP + 12].copy_from_slice(&checksum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;

    const L2_TEST: L2 = L2 {
        src: [2, 0, 0, 0, 0, 1],
        dst: [2, 0, 0, 0, 0, 2],
    };

    fn addr(text: &str) -> SocketAddrV4 {
        text.parse().unwrap()
    }

    #[test]
    fn macs_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_mac("02:fe:c0:a8:32:02").unwrap(),
            [2, 0xfe, 0xc0, 0xa8, 0x32, 2]
        );
        for bad in [
            "02:fe:c0:a8:32",
            "02:fe:c0:a8:32:02:01",
            "zz:fe:c0:a8:32:02",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_blind_reset_parses_back_with_its_sequence_number() {
        let frame = tcp(
            L2_TEST,
            addr("203.0.113.10:41000"),
            addr("192.168.50.2:30080"),
            0x8000_0000,
            Segment::Rst,
        );
        let sliced = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!("not TCP");
        };
        assert!(tcp.rst() && !tcp.syn());
        assert_eq!(tcp.sequence_number(), 0x8000_0000);
        assert_eq!((tcp.source_port(), tcp.destination_port()), (41000, 30080));
    }

    #[test]
    fn an_icmp_error_quotes_a_datagram_back_to_its_sender() {
        let src = Ipv4Addr::new(10, 244, 0, 9);
        let dst = Ipv4Addr::new(10, 244, 0, 3);
        let packet = icmp_error_ip(src, dst, PORT_UNREACHABLE, b"covert");
        let sliced = SlicedPacket::from_ip(&packet).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
            panic!("not IPv4");
        };
        assert_eq!(ip.header().source_addr(), src);
        assert_eq!(ip.header().protocol(), etherparse::IpNumber::ICMP);
        // Quoted: an IPv4 header from dst to src right after the 8-byte ICMP header.
        assert_eq!(&packet[20 + 8 + 12..20 + 8 + 16], &dst.octets());
        assert_eq!(&packet[20 + 8 + 16..20 + 8 + 20], &src.octets());
        assert_eq!(redirect(dst).2, dst.octets());
    }

    #[test]
    fn malformed_frames_fail_to_parse_as_they_say() {
        for how in Broken::ALL {
            let frame = malformed(
                L2_TEST,
                addr("203.0.113.7:1000"),
                addr("192.168.50.2:30080"),
                how,
            );
            assert!(
                SlicedPacket::from_ethernet(&frame).is_err(),
                "{how:?} parses"
            );
        }
        let good = tcp(
            L2_TEST,
            addr("203.0.113.7:1000"),
            addr("192.168.50.2:30080"),
            1,
            Segment::Syn,
        );
        let mut fixed = good.clone();
        fix_ip_checksum(&mut fixed);
        assert_eq!(fixed, good, "the checksum helper agrees with etherparse");
    }
}
