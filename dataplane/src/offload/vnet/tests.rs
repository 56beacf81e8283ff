use super::*;
use crate::offload::testing::{MSS, super_packet};

#[test]
fn header_bytes_round_trip_little_endian() {
    let h = VnetHeader::tcpv4(34, 32, 1448);
    let b = h.to_bytes();
    assert_eq!(b[..4], [F_NEEDS_CSUM, GSO_TCPV4, 66, 0]);
    assert_eq!(b[4..6], 1448u16.to_le_bytes());
    assert_eq!(VnetHeader::parse(&b), h);
    assert_eq!(VnetHeader::parse(&VnetHeader::NONE), VnetHeader::default());
}

#[test]
fn an_honest_super_packet_passes_both_checks() {
    let p = super_packet(1, 3 * MSS);
    assert_eq!(check_frame(&p.meta, p.len()), Ok(()));
    assert_eq!(check_l4(&p.meta, 34, L4Proto::Tcp, false), Ok(()));
}

#[test]
fn lying_headers_are_refused_with_named_reasons() {
    let p = super_packet(1, 3 * MSS);
    let len = p.len();
    let with = |f: &dyn Fn(&mut Meta)| {
        let mut m = p.meta;
        f(&mut m);
        m
    };
    let invalid = Err(DropReason::VnetHeaderInvalid);
    assert_eq!(
        check_frame(&with(&|m| m.offload.gso_size = 0), len),
        invalid
    );
    assert_eq!(
        check_frame(&with(&|m| m.offload.hdr_len = len as u16 + 1), len),
        invalid
    );
    assert_eq!(
        check_frame(&with(&|m| m.offload.csum_start = len as u16 - 17), len),
        invalid
    );
    assert_eq!(
        check_frame(&with(&|m| m.offload.csum_offset = 60000), len),
        invalid
    );
    assert_eq!(
        check_frame(&with(&|m| m.offload.gso_type = 9), len),
        invalid
    );
    assert_eq!(
        check_frame(&with(&|m| m.csum_partial = false), len),
        invalid
    );
    let mismatch = Err(DropReason::GsoTypeMismatch);
    assert_eq!(check_l4(&p.meta, 34, L4Proto::Udp, false), mismatch);
    assert_eq!(check_l4(&p.meta, 34, L4Proto::Tcp, true), mismatch);
    assert_eq!(
        check_l4(
            &with(&|m| m.offload.gso_type = GSO_UDP_L4),
            34,
            L4Proto::Tcp,
            false
        ),
        mismatch
    );
    assert_eq!(
        check_l4(
            &with(&|m| m.offload.csum_start = 30),
            34,
            L4Proto::Tcp,
            false
        ),
        mismatch
    );
    assert_eq!(
        check_l4(
            &with(&|m| m.offload.csum_offset = 6),
            34,
            L4Proto::Tcp,
            false
        ),
        mismatch
    );
}
