//! Every header view over arbitrary bytes: `new_checked` then every getter must not panic.
#![no_main]

use dataplane::wire::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = EthernetFrame::new_checked(data) {
        let _ = (
            e.src_addr(),
            e.dst_addr(),
            e.ethertype(),
            e.vlan_id(),
            e.payload().len(),
        );
    }
    if let Ok(a) = ArpPacket::new_checked(data) {
        let _ = ArpRepr::parse(&a);
    }
    if let Ok(ip) = Ipv4Packet::new_checked(data) {
        let _ = (
            ip.verify_checksum(),
            ip.payload().len(),
            Ipv4Repr::parse(&ip),
        );
    }
    if let Ok(ip) = Ipv4Packet::new_inner(data) {
        let _ = (ip.src_addr(), ip.dst_addr(), ip.payload().len());
    }
    if let Ok(ip) = Ipv6Packet::new_checked(data) {
        let _ = (ip.next_header(), ip.payload().len());
        let _ = ipv6_ext::walk(data, ip.next_header());
    }
    if let Ok(i) = Icmpv6Packet::new_checked(data) {
        let v6 = std::net::Ipv6Addr::LOCALHOST;
        let _ = (
            i.verify_checksum(v6, v6),
            i.nd_target(),
            i.source_link_addr(),
            i.is_ndp(),
        );
    }
    let a = std::net::Ipv4Addr::new(10, 0, 0, 1);
    if let Ok(u) = UdpPacket::new_checked(data) {
        let _ = (u.verify_checksum(a, a), u.payload().len());
    }
    if let Ok(t) = TcpPacket::new_checked(data) {
        let _ = (t.verify_checksum(a, a), t.flags(), t.payload().len());
    }
    if let Ok(i) = Icmpv4Packet::new_checked(data) {
        let _ = (i.verify_checksum(), i.is_error(), i.inner().len());
    }
    if let Ok(v) = VxlanPacket::new_checked(data) {
        let _ = (v.vni(), v.payload().len());
    }
});
