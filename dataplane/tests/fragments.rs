//! IPv4 fragment trains through the pipeline: the first fragment decides, the later ones
//! follow it (same translation, same verdict), and the NATed datagram's checksums stay right
//! in every fragment (checked by reassembling what left, independently of the dataplane).

mod common;

use std::net::Ipv4Addr;

use common::frames::{self, L4, ones_sum, seen, vxlan};
use common::*;
use dataplane::drop::DropReason;
use dataplane::packet::Verdict;

const L3: usize = 14;

/// A UDP datagram from the client pod with `len` payload bytes (DF clear).
fn datagram(h: &Harness, dst: &str, dport: u16, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    frames::ipv4(
        CLIENT_MAC,
        h.snap.node.gateway_mac,
        ip(CLIENT_IP),
        ip(dst),
        64,
        false,
        L4::Udp {
            sport: 41000,
            dport,
        },
        &payload,
    )
}

/// Cuts an Ethernet/IPv4 frame into fragments of `chunk` payload bytes (a multiple of 8).
fn fragment(frame: &[u8], id: u16, chunk: usize) -> Vec<Vec<u8>> {
    let ihl = usize::from(frame[L3] & 0x0f) * 4;
    let payload = &frame[L3 + ihl..];
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + chunk).min(payload.len());
        let mut f = frame[..L3 + ihl].to_vec();
        f.extend_from_slice(&payload[off..end]);
        let total = (ihl + end - off) as u16;
        f[L3 + 2..L3 + 4].copy_from_slice(&total.to_be_bytes());
        f[L3 + 4..L3 + 6].copy_from_slice(&id.to_be_bytes());
        let more = if end < payload.len() { 0x2000 } else { 0 };
        let flags = more | (off / 8) as u16;
        f[L3 + 6..L3 + 8].copy_from_slice(&flags.to_be_bytes());
        f[L3 + 10..L3 + 12].copy_from_slice(&[0, 0]);
        let c = !ones_sum(&[&f[L3..L3 + ihl]]);
        f[L3 + 10..L3 + 12].copy_from_slice(&c.to_be_bytes());
        out.push(f);
        off = end;
    }
    out
}

/// Runs a fragment and asserts it leaves on `out` (the harness's `expect_tx` checks the L4
/// checksum per frame, which only the reassembled datagram has).
fn tx(
    h: &mut Harness,
    port: dataplane::packet::PortId,
    f: &[u8],
    out: dataplane::packet::PortId,
) -> Vec<u8> {
    let (v, bytes) = h.run(port, f);
    assert_eq!(v, Verdict::Tx(out));
    bytes
}

/// The inner frame of a VXLAN frame to node B.
fn inner(out: &[u8]) -> Vec<u8> {
    let outer = seen(out);
    assert_eq!((outer.dst, outer.dport), (ip(NODE_B), 8472));
    outer.payload[8..].to_vec()
}

/// Checks each fragment's IPv4 header, then reassembles them and returns (src, dst, UDP
/// datagram) after checking the UDP checksum over the whole datagram.
fn reassemble(frags: &[Vec<u8>]) -> (Ipv4Addr, Ipv4Addr, Vec<u8>) {
    let mut parts: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut addrs = None;
    for f in frags {
        let ihl = usize::from(f[L3] & 0x0f) * 4;
        assert_eq!(
            ones_sum(&[&f[L3..L3 + ihl]]),
            0xffff,
            "IPv4 header checksum"
        );
        let src = Ipv4Addr::new(f[L3 + 12], f[L3 + 13], f[L3 + 14], f[L3 + 15]);
        let dst = Ipv4Addr::new(f[L3 + 16], f[L3 + 17], f[L3 + 18], f[L3 + 19]);
        match addrs {
            None => addrs = Some((src, dst)),
            Some(a) => assert_eq!(a, (src, dst), "every fragment translated alike"),
        }
        let off = usize::from(u16::from_be_bytes([f[L3 + 6], f[L3 + 7]]) & 0x1fff) * 8;
        let total = usize::from(u16::from_be_bytes([f[L3 + 2], f[L3 + 3]]));
        parts.push((off, f[L3 + ihl..L3 + total].to_vec()));
    }
    parts.sort_by_key(|p| p.0);
    let mut dgram = Vec::new();
    for (off, p) in parts {
        assert_eq!(
            off,
            dgram.len(),
            "fragments cover the datagram without gaps"
        );
        dgram.extend_from_slice(&p);
    }
    let (src, dst) = addrs.expect("some fragments");
    let len = (dgram.len() as u16).to_be_bytes();
    let pseudo = [&src.octets()[..], &dst.octets()[..], &[0, 17], &len[..]].concat();
    assert_eq!(
        ones_sum(&[&pseudo, &dgram]),
        0xffff,
        "UDP checksum of the whole datagram"
    );
    (src, dst, dgram)
}

fn ports(dgram: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([dgram[0], dgram[1]]),
        u16::from_be_bytes([dgram[2], dgram[3]]),
    )
}

#[test]
fn a_fragmented_datagram_to_a_cluster_ip_is_dnatted_in_every_fragment() {
    let mut h = Harness::new();
    let whole = datagram(&h, VIP_DNS, 53, 3000);
    let frags = fragment(&whole, 0x1234, 1400);
    assert_eq!(frags.len(), 3);
    let out: Vec<Vec<u8>> = frags
        .iter()
        .map(|f| inner(&tx(&mut h, CLIENT, f, UPLINK)))
        .collect();
    let (src, dst, dgram) = reassemble(&out);
    assert_eq!((src, dst), (ip(CLIENT_IP), ip(REMOTE_DNS)));
    assert_eq!(
        ports(&dgram),
        (41000, 5353),
        "DNAT to the backend's targetPort"
    );
    assert_eq!(dgram.len(), 3008);

    // The backend's fragmented answer comes back un-DNATed, every fragment alike.
    let answer: Vec<u8> = (0..2500).map(|i| i as u8).collect();
    let reply = frames::ipv4(
        NODE_B_VTEP_MAC,
        h.snap.node.vtep_mac,
        ip(REMOTE_DNS),
        ip(CLIENT_IP),
        63,
        false,
        L4::Udp {
            sport: 5353,
            dport: 41000,
        },
        &answer,
    );
    let back: Vec<Vec<u8>> = fragment(&reply, 0x99, 1400)
        .iter()
        .map(|f| {
            let wrapped = vxlan(
                NODE_B_UPLINK_MAC,
                h.snap.node.uplink_mac,
                ip(NODE_B),
                ip(NODE_A),
                8472,
                1,
                f,
            );
            tx(&mut h, UPLINK, &wrapped, CLIENT)
        })
        .collect();
    let (src, dst, dgram) = reassemble(&back);
    assert_eq!((src, dst), (ip(VIP_DNS), ip(CLIENT_IP)));
    assert_eq!(ports(&dgram), (53, 41000));
    assert_eq!(&dgram[8..], &answer[..]);
}

#[test]
fn a_later_fragment_before_its_first_is_counted_unknown_and_the_rest_follow() {
    let mut h = Harness::new();
    let whole = datagram(&h, VIP_DNS, 53, 4000);
    let frags = fragment(&whole, 7, 1400);
    assert_eq!(frags.len(), 3);
    let (v, _) = h.run(CLIENT, &frags[2]);
    assert_eq!(v, Verdict::Drop(DropReason::FragmentUnknown));
    let first = inner(&tx(&mut h, CLIENT, &frags[0], UPLINK));
    let middle = inner(&tx(&mut h, CLIENT, &frags[1], UPLINK));
    assert_eq!(seen(&first).dst, ip(REMOTE_DNS));
    let m = &middle[L3 + 16..L3 + 20];
    assert_eq!(
        m,
        &ip(REMOTE_DNS).octets(),
        "the middle fragment follows the first"
    );
    assert_eq!(
        h.pipe.drops.get(DropReason::FragmentUnknown),
        1,
        "counted once"
    );
    // The same addresses with another IP id are another datagram: unknown.
    let other = fragment(&whole, 8, 1400);
    let (v, _) = h.run(CLIENT, &other[1]);
    assert_eq!(v, Verdict::Drop(DropReason::FragmentUnknown));
}

#[test]
fn a_denied_first_fragment_denies_every_fragment_of_its_datagram() {
    let mut h = Harness::new();
    // store-db accepts only store-be-1 on TCP 6379: UDP from the client is denied.
    let whole = datagram(&h, DB_IP, 6379, 3000);
    for f in fragment(&whole, 42, 1400) {
        let (v, _) = h.run(CLIENT, &f);
        assert_eq!(v, Verdict::Drop(DropReason::PolicyIngressDenied));
    }
    // A later fragment of an unseen datagram toward the same pod: no entry, no way through.
    let stray = fragment(&datagram(&h, DB_IP, 6379, 3000), 43, 1400);
    let (v, _) = h.run(CLIENT, &stray[1]);
    assert_eq!(v, Verdict::Drop(DropReason::FragmentUnknown));
}

#[test]
fn fragments_that_overlap_or_cut_the_l4_header_are_malformed() {
    let mut h = Harness::new();
    // A first fragment with 8 bytes of a 20-byte TCP header.
    let syn = frames::ipv4(
        CLIENT_MAC,
        h.snap.node.gateway_mac,
        ip(CLIENT_IP),
        ip(BE1_IP),
        64,
        false,
        L4::Syn {
            sport: 40000,
            dport: 80,
            seq: 1,
        },
        &[0u8; 64],
    );
    let tiny = fragment(&syn, 5, 8);
    let (v, _) = h.run(CLIENT, &tiny[0]);
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
    // A later fragment at offset 8 would rewrite the TCP header's flags on reassembly.
    let (v, _) = h.run(CLIENT, &tiny[1]);
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
}

#[test]
fn fragments_to_a_local_pod_without_nat_are_delivered_and_freed() {
    let mut h = Harness::new();
    let whole = datagram(&h, BE1_IP, 9000, 2000);
    let frags = fragment(&whole, 77, 1400);
    let out: Vec<Vec<u8>> = frags.iter().map(|f| tx(&mut h, CLIENT, f, BE1)).collect();
    let (src, dst, dgram) = reassemble(&out);
    assert_eq!((src, dst), (ip(CLIENT_IP), ip(BE1_IP)));
    assert_eq!(ports(&dgram), (41000, 9000));
    // The datagram was covered: its entry is gone, a duplicate fragment finds none.
    let (v, _) = h.run(CLIENT, &frags[1]);
    assert_eq!(v, Verdict::Drop(DropReason::FragmentUnknown));
}
