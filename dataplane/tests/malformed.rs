//! Malformed and truncated frames of every header type are dropped with a reason and never
//! panic; arbitrary bytes on every port kind never panic either.

mod common;

use common::frames::{self, L4, vxlan};
use common::*;
use dataplane::drop::DropReason;
use dataplane::packet::Verdict;
use proptest::prelude::*;

/// Valid frames of each kind the pipeline parses, with the port they arrive on.
fn valid_frames(h: &Harness) -> Vec<(dataplane::packet::PortId, Vec<u8>)> {
    let gw = h.snap.node.gateway_mac;
    let up = h.snap.node.uplink_mac;
    let tcp = frames::ipv4(
        CLIENT_MAC,
        gw,
        ip(CLIENT_IP),
        ip(VIP_STORE),
        64,
        true,
        L4::Syn {
            sport: 1,
            dport: 80,
            seq: 1,
        },
        b"payload",
    );
    let udp = frames::ipv4(
        CLIENT_MAC,
        gw,
        ip(CLIENT_IP),
        ip(VIP_DNS),
        64,
        true,
        L4::Udp {
            sport: 2,
            dport: 53,
        },
        b"query",
    );
    let icmp = frames::ipv4(
        CLIENT_MAC,
        gw,
        ip(CLIENT_IP),
        ip(BE1_IP),
        64,
        true,
        L4::Echo { id: 3, seq: 1 },
        b"ping",
    );
    let arp = frames::arp_request(CLIENT_MAC, ip(CLIENT_IP), h.snap.node.gateway_ip);
    let inner = frames::ipv4(
        NODE_B_VTEP_MAC,
        h.snap.node.vtep_mac,
        ip(REMOTE_BE),
        ip(BE1_IP),
        64,
        true,
        L4::Udp { sport: 4, dport: 5 },
        b"x",
    );
    let vx = vxlan(
        NODE_B_UPLINK_MAC,
        up,
        ip(NODE_B),
        ip(NODE_A),
        8472,
        1,
        &inner,
    );
    vec![
        (CLIENT, tcp),
        (CLIENT, udp),
        (CLIENT, icmp),
        (CLIENT, arp),
        (UPLINK, vx),
    ]
}

#[test]
fn every_truncation_of_every_frame_is_dropped_with_a_reason() {
    let mut h = Harness::new();
    for (port, frame) in valid_frames(&h) {
        let (full, _) = h.run(port, &frame);
        assert!(
            matches!(full, Verdict::Tx(_)),
            "the untruncated frame passes: {full:?}"
        );
        // ARP frames are padded to 60 bytes; every cut below the headers must fail.
        let needed = if frame[12..14] == [0x08, 0x06] {
            42
        } else {
            frame.len()
        };
        for len in 0..needed {
            let mut h2 = Harness::new();
            let (v, _) = h2.run(port, &frame[..len]);
            assert!(
                matches!(v, Verdict::Drop(_)),
                "truncated to {len} of {} bytes: {v:?}",
                frame.len()
            );
            assert_eq!(h2.pipe.drops.total(), 1, "each drop is counted once");
        }
    }
}

#[test]
fn bad_header_fields_name_their_reason() {
    let mut h = Harness::new();
    let gw = h.snap.node.gateway_mac;
    let good = frames::ipv4(
        CLIENT_MAC,
        gw,
        ip(CLIENT_IP),
        ip(BE1_IP),
        64,
        true,
        L4::Udp { sport: 1, dport: 2 },
        b"abc",
    );
    let mut bad_csum = good.clone();
    bad_csum[24] ^= 0xff;
    let mut bad_version = good.clone();
    bad_version[14] = 0x65;
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    let mut long_total = good.clone();
    long_total[16] = 0x05;
    let mut gre = good.clone();
    gre[23] = 47;
    let mut ipv6 = good.clone();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut vlan = good.clone();
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    for f in [&mut bad_version, &mut bad_ihl, &mut long_total, &mut gre] {
        fix_ip_checksum(f);
    }
    let cases = [
        (bad_csum, DropReason::BadChecksum),
        (bad_version, DropReason::Malformed),
        (bad_ihl, DropReason::Malformed),
        (long_total, DropReason::Malformed),
        (gre, DropReason::UnsupportedProtocol),
        (ipv6, DropReason::Ipv6Disabled),
        (vlan, DropReason::UnsupportedProtocol),
    ];
    for (frame, want) in cases {
        assert_eq!(h.run(CLIENT, &frame).0, Verdict::Drop(want));
    }
}

/// Recomputes the IPv4 header checksum (20-byte header at offset 14) with the test's sum.
fn fix_ip_checksum(f: &mut [u8]) {
    f[24..26].copy_from_slice(&[0, 0]);
    let c = !frames::ones_sum(&[&f[14..34]]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), port in 0u16..6) {
        let mut h = Harness::new();
        let (v, _) = h.run(dataplane::packet::PortId(port), &bytes);
        prop_assert!(v != Verdict::Pending);
    }

    #[test]
    fn corrupted_valid_frames_never_panic(idx in 0usize..5, pos in 0usize..120, byte in any::<u8>()) {
        let mut h = Harness::new();
        let frames = valid_frames(&h);
        let (port, mut f) = frames[idx].clone();
        let at = pos % f.len();
        f[at] = byte;
        let (v, out) = h.run(port, &f);
        // Whatever passes leaves with a correct IPv4 header checksum (a corrupted L4 payload
        // is forwarded as it came, like any router does).
        if matches!(v, Verdict::Tx(_)) && out[12..14] == [0x08, 0x00] {
            let ihl = usize::from(out[14] & 0x0f) * 4;
            prop_assert_eq!(frames::ones_sum(&[&out[14..14 + ihl]]), 0xffff);
        }
    }
}
