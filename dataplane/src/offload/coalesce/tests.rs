#![allow(clippy::unwrap_used, reason = "test")]

use super::*;
use crate::offload::testing::{MSS, check_tcp, finish_partial, tcp_frame};

fn segs(specs: &[(u32, u32, bool, usize)]) -> Vec<Packet> {
    specs
        .iter()
        .map(|&(seq, ack, psh, len)| Packet::from_frame(&tcp_frame(seq, ack, psh, len)).unwrap())
        .collect()
}

/// Merges a run as the TAP writer does and returns the bytes the pod's kernel receives,
/// with the partial checksum finished.
fn merged(pkts: &mut [Packet]) -> (VnetHeader, Vec<u8>) {
    let (head, rest) = pkts.split_first_mut().unwrap();
    let total = payload_of(head).len() + rest.iter().map(|p| payload_of(p).len()).sum::<usize>();
    let psh = rest.last().is_some_and(has_psh);
    let hdr = merge_head(head, total, psh);
    let mut bytes = head.data().to_vec();
    for p in rest.iter() {
        bytes.extend_from_slice(payload_of(p));
    }
    (hdr, finish_partial(&bytes, 34))
}

#[test]
fn contiguous_segments_merge_into_one_valid_super_packet() {
    let m = MSS as u32;
    let mut pkts = segs(&[
        (100, 1, false, MSS),
        (100 + m, 1, false, MSS),
        (100 + 2 * m, 1, true, 500),
    ]);
    assert_eq!(run(&pkts), 3);
    let (hdr, bytes) = merged(&mut pkts);
    assert_eq!(hdr.gso_type, super::super::vnet::GSO_TCPV4);
    assert_eq!(usize::from(hdr.gso_size), MSS);
    assert_eq!((hdr.csum_start, hdr.csum_offset, hdr.hdr_len), (34, 16, 66));
    let c = check_tcp(&bytes);
    assert!(c.psh, "PSH of the last segment");
    assert_eq!(c.seq, 100);
    assert_eq!(c.payload, tcp_frame(100, 1, false, 2 * MSS + 500)[66..]);
}

#[test]
fn runs_stop_at_what_the_kernel_would_not_merge() {
    let m = MSS as u32;
    // Another ACK number.
    assert_eq!(run(&segs(&[(0, 1, false, MSS), (m, 2, false, MSS)])), 1);
    // A gap in the sequence.
    assert_eq!(run(&segs(&[(0, 1, false, MSS), (m + 1, 1, false, MSS)])), 1);
    // PSH ends a run (and a head with PSH merges nothing).
    let p = segs(&[
        (0, 1, false, MSS),
        (m, 1, true, MSS),
        (2 * m, 1, false, MSS),
    ]);
    assert_eq!(run(&p), 2);
    assert_eq!(run(&segs(&[(0, 1, true, MSS), (m, 1, false, MSS)])), 1);
    // A shorter segment ends a run; a longer one than the head does not join.
    let p = segs(&[
        (0, 1, false, MSS),
        (m, 1, false, 10),
        (m + 10, 1, false, MSS),
    ]);
    assert_eq!(run(&p), 2);
    assert_eq!(run(&segs(&[(0, 1, false, 100), (100, 1, false, 200)])), 1);
    // Other TCP options (timestamp changed).
    let mut p = segs(&[(0, 1, false, MSS), (m, 1, false, MSS)]);
    let opt = &mut p[1].data_mut()[34 + 24];
    *opt ^= 1;
    let mut f = p[1].data().to_vec();
    let mut t = crate::wire::TcpPacket::new_unchecked(&mut f[34..]);
    t.fill_checksum(SRC_IP, DST_IP);
    p[1] = Packet::from_frame(&f).unwrap();
    assert_eq!(run(&p), 1);
    // A bad checksum is never merged.
    let mut p = segs(&[(0, 1, false, MSS), (m, 1, false, MSS)]);
    p[1].data_mut()[100] ^= 0xff;
    assert_eq!(run(&p), 1);
    // Pure ACKs and partial-checksum frames are not merged.
    assert_eq!(run(&segs(&[(0, 1, false, 0), (0, 1, false, 0)])), 1);
    let mut p = segs(&[(0, 1, false, MSS), (m, 1, false, MSS)]);
    p[0].meta.csum_partial = true;
    assert_eq!(run(&p), 1);
}

#[test]
fn a_run_stays_within_64_kb() {
    let specs: Vec<_> = (0..60u32)
        .map(|i| (i * MSS as u32, 1, false, MSS))
        .collect();
    let n = run(&segs(&specs));
    assert_eq!(n, (65_535 - 52) / MSS, "whole segments after the headers");
    assert!(20 + 32 + n * MSS <= 65_535);
}

const SRC_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 244, 1, 5);
const DST_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 244, 2, 7);
