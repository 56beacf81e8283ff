//! The whole pipeline over arbitrary frames on every port kind of a small dual-stack cluster
//! (IPv6 frames take the IPv6 path, `pipeline::v6`): it must
//! never panic, and every packet must end with a verdict. The first byte picks the port; the
//! second says what to repair after mutation (bit 0: IPv4 header checksums, bit 1: L4
//! checksums, outer and VXLAN-inner) and whether the device left the L4 checksum partial
//! (bit 2, `csum_partial`), so mutated frames get past the checksum checks into the stages.
#![no_main]

mod checksums;

use std::sync::{Arc, OnceLock};

use bench::fixture::Scale;
use bench::fixture_v6;
use dataplane::packet::{Packet, PortId, Verdict};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::Snapshot;
use dataplane::tables::affinity::AffinityTable;
use dataplane::tables::conntrack::{Conntrack, ConntrackConfig};
use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        fixture_v6::snapshot(Scale {
            services: 20,
            endpoints_per_service: 3,
            policies: 10,
            local_pods: 4,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let [port, repair, frame @ ..] = data else {
        return;
    };
    let mut frame = frame.to_vec();
    if repair & 0b11 != 0 {
        checksums::fix_frame(&mut frame, repair & 0b10 != 0);
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
    pkt.meta.in_port = PortId(u16::from(port % 8));
    pkt.meta.csum_partial = repair & 0b100 != 0;
    let v = pipe.process(snapshot(), &mut pkt);
    assert!(v != Verdict::Pending);
});
