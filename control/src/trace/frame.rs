//! The synthetic first packet of a flow, as it enters its first node: a TCP SYN, a UDP
//! datagram, an ICMP echo request or an SCTP INIT, in a complete Ethernet frame with correct checksums, so
//! the pipeline treats it exactly like a packet from a real interface.

use std::net::Ipv4Addr;

use dataplane::flow::L4Proto;
use dataplane::wire::{
    EthernetRepr, Icmpv4Packet, Ipv4Repr, MacAddr, SctpPacket, TcpFlags, TcpPacket, UdpPacket,
    ethernet, icmp, ipv4, sctp, tcp, udp,
};

/// Bytes after the L4 header of UDP and ICMP probes.
const PAYLOAD: &[u8] = b"ferroplane trace";
/// The TCP window of the SYN (Linux's default initial window).
const SYN_WINDOW: u16 = 64240;

/// Addresses of the probe: Ethernet (source, destination), IP, ports. ICMP uses `sport` as the
/// echo identifier and ignores `dport`.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub proto: L4Proto,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

/// The frame of the first packet.
pub fn first_packet(probe: &Probe) -> Vec<u8> {
    let l4_len = match probe.proto {
        L4Proto::Tcp => tcp::HEADER_LEN,
        L4Proto::Udp => udp::HEADER_LEN + PAYLOAD.len(),
        L4Proto::Icmp => icmp::HEADER_LEN + PAYLOAD.len(),
        L4Proto::Sctp => sctp::HEADER_LEN + SCTP_INIT_LEN,
    };
    let l3 = ethernet::HEADER_LEN;
    let l4 = l3 + ipv4::HEADER_LEN;
    let mut frame = vec![0u8; l4 + l4_len];
    let ethernet = EthernetRepr {
        src: probe.src_mac,
        dst: probe.dst_mac,
        ethertype: ethernet::ETHERTYPE_IPV4,
    };
    let ip = Ipv4Repr {
        src: probe.src,
        dst: probe.dst,
        protocol: probe.proto as u8,
        ttl: 64,
        payload_len: l4_len as u16,
        dont_frag: true,
        ident: 1,
    };
    // The buffer is sized for both headers above, so neither emit can fail.
    let _ = ethernet.emit(&mut frame);
    let _ = ip.emit(&mut frame[l3..]);
    let segment = &mut frame[l4..];
    match probe.proto {
        L4Proto::Tcp => {
            let mut t = TcpPacket::new_unchecked(segment);
            t.set_src_port(probe.sport);
            t.set_dst_port(probe.dport);
            t.set_seq_number(1);
            t.set_header_len(tcp::HEADER_LEN);
            t.set_flags(TcpFlags::SYN);
            t.set_window(SYN_WINDOW);
            t.fill_checksum(probe.src, probe.dst);
        }
        L4Proto::Udp => {
            segment[udp::HEADER_LEN..].copy_from_slice(PAYLOAD);
            let mut u = UdpPacket::new_unchecked(segment);
            u.set_src_port(probe.sport);
            u.set_dst_port(probe.dport);
            u.set_len(l4_len as u16);
            u.fill_checksum(probe.src, probe.dst);
        }
        L4Proto::Icmp => {
            segment[icmp::HEADER_LEN..].copy_from_slice(PAYLOAD);
            let mut i = Icmpv4Packet::new_unchecked(segment);
            i.set_msg_type(icmp::ECHO_REQUEST);
            i.set_code(0);
            i.set_echo_ident(probe.sport);
            i.set_echo_seq(1);
            i.fill_checksum();
        }
        L4Proto::Sctp => {
            write_sctp_init(segment, probe.sport, probe.dport);
        }
    }
    frame
}

/// An INIT chunk's length without parameters (RFC 9260 §3.3.2).
const SCTP_INIT_LEN: usize = 20;

/// An SCTP packet with one INIT chunk (verification tag 0, as RFC 9260 requires for INIT).
fn write_sctp_init(segment: &mut [u8], sport: u16, dport: u16) {
    let init = &mut segment[sctp::HEADER_LEN..];
    init[0] = sctp::chunk::INIT;
    init[2..4].copy_from_slice(&(SCTP_INIT_LEN as u16).to_be_bytes());
    init[4..8].copy_from_slice(&0x6665_7272u32.to_be_bytes()); // initiate tag
    init[8..12].copy_from_slice(&65_536u32.to_be_bytes()); // a_rwnd
    init[12..14].copy_from_slice(&10u16.to_be_bytes()); // outbound streams
    init[14..16].copy_from_slice(&10u16.to_be_bytes()); // inbound streams
    init[16..20].copy_from_slice(&1u32.to_be_bytes()); // initial TSN
    segment[0..2].copy_from_slice(&sport.to_be_bytes());
    segment[2..4].copy_from_slice(&dport.to_be_bytes());
    SctpPacket::new_unchecked(segment).fill_checksum();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(proto: L4Proto) -> Probe {
        Probe {
            src_mac: MacAddr([0x0a, 0x58, 10, 244, 0, 2]),
            dst_mac: MacAddr([0x02, 0, 0, 0, 0, 1]),
            proto,
            src: Ipv4Addr::new(10, 244, 0, 2),
            sport: 40000,
            dst: Ipv4Addr::new(10, 96, 0, 10),
            dport: 53,
        }
    }

    /// One's-complement sum over `bytes` (an independent checksum oracle).
    fn sum(bytes: &[u8]) -> u32 {
        bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum()
    }

    fn folds_to_ffff(mut s: u32) -> bool {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s == 0xffff
    }

    fn pseudo(frame: &[u8], proto: u8) -> u32 {
        let len = (frame.len() - 34) as u32;
        sum(&frame[26..34]) + u32::from(proto) + len
    }

    #[test]
    fn tcp_syn_layout_and_checksums() {
        let frame = first_packet(&probe(L4Proto::Tcp));
        assert_eq!(frame.len(), 54);
        assert_eq!(&frame[0..6], &[0x02, 0, 0, 0, 0, 1]);
        assert_eq!(&frame[6..12], &[0x0a, 0x58, 10, 244, 0, 2]);
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        assert_eq!(frame[14], 0x45);
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 40);
        assert_eq!(frame[23], 6);
        assert!(folds_to_ffff(sum(&frame[14..34])), "IPv4 header checksum");
        assert_eq!(u16::from_be_bytes([frame[34], frame[35]]), 40000);
        assert_eq!(u16::from_be_bytes([frame[36], frame[37]]), 53);
        assert_eq!(frame[46] >> 4, 5, "data offset");
        assert_eq!(frame[47], 0x02, "SYN only");
        assert!(
            folds_to_ffff(pseudo(&frame, 6) + sum(&frame[34..])),
            "TCP checksum"
        );
    }

    #[test]
    fn udp_and_icmp_checksums() {
        let frame = first_packet(&probe(L4Proto::Udp));
        assert_eq!(frame[23], 17);
        assert_eq!(
            usize::from(u16::from_be_bytes([frame[38], frame[39]])),
            frame.len() - 34
        );
        assert!(folds_to_ffff(pseudo(&frame, 17) + sum(&frame[34..])));
        let frame = first_packet(&probe(L4Proto::Icmp));
        assert_eq!((frame[23], frame[34], frame[35]), (1, 8, 0));
        assert_eq!(u16::from_be_bytes([frame[38], frame[39]]), 40000);
        assert!(folds_to_ffff(sum(&frame[34..])));
    }
}
