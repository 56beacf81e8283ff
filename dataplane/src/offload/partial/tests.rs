#![allow(clippy::unwrap_used, reason = "test")]

use std::net::Ipv4Addr;

use super::*;
use crate::flow::FlowKey;
use crate::offload::testing::{DST, MSS, SRC, check_tcp, finish_partial, super_packet, tcp_frame};

#[test]
fn dnat_and_snat_keep_a_partial_checksum_correct() {
    let mut p = super_packet(9, 4 * MSS);
    let from = FlowKey::new(L4Proto::Tcp, SRC.into(), 40000, DST.into(), 5201);
    let to = FlowKey::new(
        L4Proto::Tcp,
        Ipv4Addr::new(192, 168, 50, 2),
        61234,
        Ipv4Addr::new(10, 244, 3, 9),
        8080,
    );
    rewrite(&mut p, 14, 34, &from, &to);
    let done = finish_partial(p.data(), 34);
    let c = check_tcp(&done);
    assert_eq!(c.src, [192, 168, 50, 2]);
    assert_eq!(c.dst, [10, 244, 3, 9]);
    assert_eq!(c.ports, (61234, 8080));
    assert_eq!(c.payload, tcp_frame(9, 7, true, 4 * MSS)[66..]);
    // And segmentation of the rewritten super-packet gives valid segments.
    let mut pool = crate::packet::PacketPool::with_capacity(8);
    let mut out = Vec::new();
    crate::offload::segment::segment(p.data(), 0, MSS, &p.meta, &mut pool, &mut out).unwrap();
    for s in &out {
        assert_eq!(check_tcp(s.data()).ports, (61234, 8080));
    }
}

#[test]
fn a_complete_checksum_takes_the_ordinary_rewrite() {
    let mut p = Packet::from_frame(&tcp_frame(1, 2, false, 100)).unwrap();
    let from = FlowKey::new(L4Proto::Tcp, SRC.into(), 40000, DST.into(), 5201);
    let to = FlowKey::new(
        L4Proto::Tcp,
        SRC.into(),
        40000,
        Ipv4Addr::new(10, 0, 0, 1),
        80,
    );
    rewrite(&mut p, 14, 34, &from, &to);
    assert_eq!(check_tcp(p.data()).ports, (40000, 80));
}

#[test]
fn a_super_packet_always_fits_by_lowering_its_segment_size() {
    let mut p = super_packet(1, 10 * MSS);
    let total = (p.len() - 14) as u16;
    assert!(fit_mtu(&mut p, 14, 34, total, 1450));
    assert_eq!(usize::from(p.meta.offload.gso_size), 1450 - 52);
    assert!(fit_mtu(&mut p, 14, 34, total, 9000));
    assert_eq!(
        usize::from(p.meta.offload.gso_size),
        1450 - 52,
        "never raised"
    );
    let mut plain = Packet::from_frame(&tcp_frame(1, 2, false, 1448)).unwrap();
    assert!(!fit_mtu(&mut plain, 14, 34, 1500, 1450));
    assert!(fit_mtu(&mut plain, 14, 34, 1500, 1500));
}
