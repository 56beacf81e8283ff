//! Frame builders for benchmark traffic, on the dataplane's own wire emitters (the tests
//! cross-check those emitters against etherparse).

use std::net::Ipv4Addr;

use dataplane::wire::{
    EthernetRepr, Ipv4Repr, MacAddr, TcpFlags, TcpPacket, UdpPacket, UdpRepr, ethernet, ipv4, tcp,
    udp,
};

/// A 64-byte-class TCP segment (no payload) with the given flags.
pub fn tcp_frame(
    macs: (MacAddr, MacAddr),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: TcpFlags,
) -> Vec<u8> {
    let l3 = ethernet::HEADER_LEN;
    let l4 = l3 + ipv4::HEADER_LEN;
    let mut f = vec![0u8; l4 + tcp::HEADER_LEN];
    write_l2_l3(&mut f, macs, src.0, dst.0, ipv4::PROTO_TCP, tcp::HEADER_LEN);
    let mut t = TcpPacket::new_unchecked(&mut f[l4..]);
    t.set_src_port(src.1);
    t.set_dst_port(dst.1);
    t.set_seq_number(1);
    t.set_ack_number(if flags.contains(TcpFlags::ACK) { 1 } else { 0 });
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(flags);
    t.set_window(64240);
    t.fill_checksum(src.0, dst.0);
    f
}

/// A UDP datagram with `payload_len` zero bytes of payload.
pub fn udp_frame(
    macs: (MacAddr, MacAddr),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload_len: usize,
) -> Vec<u8> {
    let l3 = ethernet::HEADER_LEN;
    let l4 = l3 + ipv4::HEADER_LEN;
    let mut f = vec![0u8; l4 + udp::HEADER_LEN + payload_len];
    write_l2_l3(
        &mut f,
        macs,
        src.0,
        dst.0,
        ipv4::PROTO_UDP,
        udp::HEADER_LEN + payload_len,
    );
    let repr = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
        payload_len: payload_len as u16,
    };
    let _ = repr.emit(&mut f[l4..]);
    UdpPacket::new_unchecked(&mut f[l4..]).fill_checksum(src.0, dst.0);
    f
}

/// Wraps `inner` in VXLAN from `from` to `to`.
pub fn vxlan_frame(
    macs: (MacAddr, MacAddr),
    from: Ipv4Addr,
    to: Ipv4Addr,
    port: u16,
    vni: u32,
    inner: &[u8],
) -> Vec<u8> {
    let l3 = ethernet::HEADER_LEN;
    let l4 = l3 + ipv4::HEADER_LEN;
    let vx = l4 + udp::HEADER_LEN;
    let mut f = vec![0u8; vx + 8 + inner.len()];
    write_l2_l3(
        &mut f,
        macs,
        from,
        to,
        ipv4::PROTO_UDP,
        udp::HEADER_LEN + 8 + inner.len(),
    );
    let repr = UdpRepr {
        src_port: 50000,
        dst_port: port,
        payload_len: (8 + inner.len()) as u16,
    };
    let _ = repr.emit(&mut f[l4..]);
    f[vx] = 0x08;
    f[vx + 4..vx + 8].copy_from_slice(&(vni << 8).to_be_bytes());
    f[vx + 8..].copy_from_slice(inner);
    f
}

fn write_l2_l3(
    f: &mut [u8],
    macs: (MacAddr, MacAddr),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload_len: usize,
) {
    let eth = EthernetRepr {
        src: macs.0,
        dst: macs.1,
        ethertype: ethernet::ETHERTYPE_IPV4,
    };
    let _ = eth.emit(f);
    let ip = Ipv4Repr {
        src,
        dst,
        protocol,
        ttl: 64,
        payload_len: payload_len as u16,
        dont_frag: true,
        ident: 0,
    };
    let _ = ip.emit(&mut f[ethernet::HEADER_LEN..]);
}

/// The frame a peer would send back for `out` (a frame the pipeline transmitted): addresses
/// and ports swapped, TCP flags set to `flags`. A VXLAN frame gets a VXLAN answer from the
/// peer VTEP with the inner frame answered the same way. `None` if `out` is not TCP/IPv4.
pub fn answer(out: &[u8], flags: TcpFlags, vxlan_port: u16) -> Option<Vec<u8>> {
    let eth = dataplane::wire::EthernetFrame::new_checked(out).ok()?;
    let ip = dataplane::wire::Ipv4Packet::new_checked(eth.payload()).ok()?;
    let macs = (eth.dst_addr(), eth.src_addr());
    match ip.protocol() {
        ipv4::PROTO_TCP => {
            let t = TcpPacket::new_checked(ip.payload()).ok()?;
            Some(tcp_frame(
                macs,
                (ip.dst_addr(), t.dst_port()),
                (ip.src_addr(), t.src_port()),
                flags,
            ))
        }
        ipv4::PROTO_UDP => {
            let u = UdpPacket::new_checked(ip.payload()).ok()?;
            if u.dst_port() != vxlan_port {
                return None;
            }
            let inner = answer(u.payload().get(8..)?, flags, vxlan_port)?;
            Some(vxlan_frame(
                macs,
                ip.dst_addr(),
                ip.src_addr(),
                vxlan_port,
                1,
                &inner,
            ))
        }
        _ => None,
    }
}
