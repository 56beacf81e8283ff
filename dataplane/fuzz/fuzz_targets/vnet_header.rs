//! A frame from a TAP pod with an arbitrary virtio-net header, through the whole pipeline and,
//! when it leaves as a super-packet for a port that cannot take one, through segmentation.
//! Input: 12 header bytes, a repair byte, the frame. The repair byte's bit 0 fixes the IPv4
//! header checksums, bit 1 puts the TCP/UDP pseudo-header seed in the L4 checksum field (what
//! a kernel with TSO hands over), so mutated frames get past the checks into the stages.
//! Oracles: no panic, a verdict for every packet; every segment of a super-packet that was
//! let through has correct IPv4 and TCP checksums and at most gso_size payload bytes.
#![no_main]

mod checksums;

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use bench::fixture::{self, Scale};
use dataplane::offload::segment;
use dataplane::offload::vnet::{HDR_LEN, VnetHeader};
use dataplane::packet::{Packet, PacketPool, PortId, Verdict};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::Snapshot;
use dataplane::tables::affinity::AffinityTable;
use dataplane::tables::conntrack::{Conntrack, ConntrackConfig};
use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        fixture::snapshot(Scale {
            services: 20,
            endpoints_per_service: 3,
            policies: 10,
            local_pods: 4,
        })
    })
}

/// Puts the pseudo-header seed (not complemented) into the TCP/UDP checksum field.
fn seed_l4(frame: &mut [u8]) {
    if frame.get(12..14) != Some(&[0x08, 0x00][..]) || frame.len() < 34 {
        return;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let (proto, l4) = (frame[23], 14 + ihl);
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => return,
    };
    if ihl < 20 || total < ihl || 14 + total > frame.len() || l4 + at + 2 > 14 + total {
        return;
    }
    let src = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
    let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
    let p = checksums::pseudo(src, dst, proto, total - ihl);
    let seed = !checksums::sum(&[&p]);
    frame[l4 + at..l4 + at + 2].copy_from_slice(&seed.to_be_bytes());
}

/// Asserts the IPv4 header and TCP checksums of a plain Ethernet/IPv4/TCP segment.
fn assert_valid(seg: &[u8], mss: usize) {
    let ip = &seg[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    assert_eq!(checksums::sum(&[&ip[..ihl]]), 0, "IPv4 header checksum");
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(total, ip.len(), "IPv4 total length");
    let tcp = &ip[ihl..total];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    assert_eq!(checksums::sum(&[&checksums::pseudo(src, dst, 6, tcp.len()), tcp]), 0, "TCP checksum");
    let thl = usize::from(tcp[12] >> 4) * 4;
    assert!(tcp.len() - thl <= mss.max(1), "segment payload within gso_size");
}

fuzz_target!(|data: &[u8]| {
    let Some((header, rest)) = data.split_first_chunk::<HDR_LEN>() else {
        return;
    };
    let [repair, frame @ ..] = rest else {
        return;
    };
    let mut frame = frame.to_vec();
    if repair & 0b10 != 0 {
        seed_l4(&mut frame);
    }
    if repair & 0b01 != 0 {
        checksums::fix_frame(&mut frame, false);
    }
    let ct = Arc::new(Conntrack::new(ConntrackConfig {
        capacity: 1024,
        ..ConntrackConfig::default()
    }));
    let mut pipe = Pipeline::new(ct, Arc::new(AffinityTable::new(64)), 1);
    pipe.begin_batch(100);
    let Some(mut pkt) = Packet::from_frame(&frame) else {
        return;
    };
    VnetHeader::parse(header).apply(&mut pkt.meta);
    // The fixture's local pods sit on ports 2.. (see bench::fixture).
    pkt.meta.in_port = PortId(2 + u16::from(repair >> 4) % 4);
    let v = pipe.process(snapshot(), &mut pkt);
    assert!(v != Verdict::Pending);
    if !matches!(v, Verdict::Tx(_)) || !pkt.meta.offload.is_gso() {
        return;
    }
    let o = pkt.meta.offload;
    let mut pool = PacketPool::with_capacity(64);
    let mut out = Vec::new();
    let made = segment::segment(
        pkt.data(),
        usize::from(o.encap_len),
        usize::from(o.gso_size),
        &pkt.meta,
        &mut pool,
        &mut out,
    );
    if made.is_ok() {
        let inner = usize::from(o.encap_len);
        for seg in &out {
            assert_valid(&seg.data()[inner..], usize::from(o.gso_size));
        }
    }
});
